namespace Parrot.Parrot.Tests.Fuzz;

/// <summary>A temporary folder for a fuzz test's input files (readers that take a path), removed after the test.</summary>
internal sealed class FuzzFolder : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "parrot-fuzz", Guid.NewGuid().ToString("N"));

    public FuzzFolder() => Directory.CreateDirectory(Path);

    /// <summary>Writes <paramref name="bytes"/> as <paramref name="name"/> (over the previous case's) and returns its path.</summary>
    public string Write(string name, byte[] bytes)
    {
        string file = System.IO.Path.Combine(Path, name);
        File.WriteAllBytes(file, bytes);
        return file;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { } // a case that hung may still hold its file
    }
}
