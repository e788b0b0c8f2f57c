using Parrot.Tensors.Formats;

namespace Parrot.Tensors.Tests;

/// <summary>Writing a file atomically: errors name the file asked for, not the hidden temporary file beside it.</summary>
public class AtomicFileTests
{
    private string _temp = "";

    [SetUp]
    public void MakeFolder()
    {
        _temp = Path.Combine(Path.GetTempPath(), "parrot-atomic-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_temp);
    }

    [TearDown]
    public void RemoveFolder()
    {
        try { Directory.Delete(_temp, recursive: true); } catch (IOException) { }
    }

    [Test]
    public void WritesAndReplacesWholeFiles()
    {
        var path = Path.Combine(_temp, "a.txt");
        AtomicFile.WriteAllText(path, "one");
        AtomicFile.WriteAllText(path, "two");
        Assert.That(File.ReadAllText(path), Is.EqualTo("two"));
        Assert.That(Directory.GetFiles(_temp), Is.EqualTo(new[] { path }), "no temporary file left");
    }

    /// <summary>These said "Could not find a part of the path '…/.out.npy.&lt;guid&gt;.tmp'" and "Is a directory : '…'".</summary>
    [Test]
    public void AMissingFolderOrADirectoryAsTheTargetIsNamed()
    {
        var inMissing = Path.Combine(_temp, "missing", "out.npy");
        var e = Assert.Throws<DirectoryNotFoundException>(() => AtomicFile.WriteAllText(inMissing, "x"))!;
        Assert.That(e.Message, Is.EqualTo($"{inMissing}: the folder {Path.Combine(_temp, "missing")} does not exist"));

        var io = Assert.Throws<IOException>(() => AtomicFile.WriteAllText(_temp, "x"))!;
        Assert.That(io.Message, Is.EqualTo($"{_temp}: is a directory; give a file name to write"));
        Assert.That(Directory.GetFileSystemEntries(_temp), Is.Empty, "nothing written");
    }
}
