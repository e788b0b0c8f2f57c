namespace Parrot.Parrot.Tests.Fuzz;

/// <summary>A temporary folder for a fuzz test's inputs; each case writes a file of its own (a hung case may still hold the last one).</summary>
internal sealed class FuzzFolder : IDisposable
{
    private int _cases;

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "parrot-fuzz", Guid.NewGuid().ToString("N"));

    public FuzzFolder() => Directory.CreateDirectory(Path);

    /// <summary>Writes <paramref name="bytes"/> as <paramref name="name"/> in a new subfolder and returns its path.</summary>
    public string Write(string name, byte[] bytes)
    {
        string dir = System.IO.Path.Combine(Path, Interlocked.Increment(ref _cases).ToString(System.Globalization.CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        string file = System.IO.Path.Combine(dir, name);
        File.WriteAllBytes(file, bytes);
        return file;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { } // a case that hung may still hold its file
    }
}
