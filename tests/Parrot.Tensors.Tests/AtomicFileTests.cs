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
    public void CopyWritesTheSourcesBytesAndACopyOntoItselfLeavesTheFile()
    {
        var from = Path.Combine(_temp, "from.bin");
        var to = Path.Combine(_temp, "to.bin");
        var bytes = Enumerable.Range(0, 300_000).Select(i => (byte)(i * 7)).ToArray();
        File.WriteAllBytes(from, bytes);
        File.WriteAllText(to, "old");
        AtomicFile.Copy(from, to);
        Assert.That(File.ReadAllBytes(to), Is.EqualTo(bytes));
        AtomicFile.Copy(from, Path.Combine(_temp, ".", "from.bin"));
        Assert.That(File.ReadAllBytes(from), Is.EqualTo(bytes));
        Assert.That(Directory.GetFiles(_temp).Select(Path.GetFileName), Is.EquivalentTo(new[] { "from.bin", "to.bin" }), "no temporary file left");
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

    /// <summary>A rename onto the link itself put a plain file in its place and left the file it points at stale.</summary>
    [Test]
    public void WritesThroughAChainOfSymbolicLinksWithARelativeTarget()
    {
        var real = Path.Combine(_temp, "data", "real.txt");
        Directory.CreateDirectory(Path.GetDirectoryName(real)!);
        File.WriteAllText(real, "old");
        var middle = Path.Combine(_temp, "middle.txt");
        File.CreateSymbolicLink(middle, Path.Combine("data", "real.txt"));
        var link = Path.Combine(_temp, "link.txt");
        File.CreateSymbolicLink(link, middle);

        AtomicFile.WriteAllText(link, "new");

        Assert.That(File.ReadAllText(real), Is.EqualTo("new"));
        Assert.That(new FileInfo(link).LinkTarget, Is.EqualTo(middle), "the link is still a link");
        Assert.That(new FileInfo(middle).LinkTarget, Is.EqualTo(Path.Combine("data", "real.txt")));
        Assert.That(Directory.GetFiles(Path.Combine(_temp, "data")), Is.EqualTo(new[] { real }), "no temporary file left beside the target");
    }

    [Test]
    public void ADanglingLinkCreatesTheFileItPointsAt()
    {
        var real = Path.Combine(_temp, "later.txt");
        var link = Path.Combine(_temp, "link.txt");
        File.CreateSymbolicLink(link, real);
        AtomicFile.WriteAllText(link, "made");
        Assert.That(File.ReadAllText(real), Is.EqualTo("made"));
        Assert.That(new FileInfo(link).LinkTarget, Is.EqualTo(real));
    }

    [Test]
    public void ALoopOfLinksIsRefusedNamingThePath()
    {
        var a = Path.Combine(_temp, "a");
        var b = Path.Combine(_temp, "b");
        File.CreateSymbolicLink(a, b);
        File.CreateSymbolicLink(b, a);
        var e = Assert.Throws<IOException>(() => AtomicFile.WriteAllText(a, "x"))!;
        Assert.That(e.Message, Does.StartWith($"{a}: more than 40 symbolic links in a row"));
        Assert.That(Directory.GetFileSystemEntries(_temp).Order(), Is.EqualTo(new[] { a, b }), "nothing written");
    }

    /// <summary>A fresh file gets the umask's mode: a key file kept 0600 became readable by others after a rewrite.</summary>
    [Test, System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void AReplacedFileKeepsItsMode()
    {
        var path = Path.Combine(_temp, "private.txt");
        File.WriteAllText(path, "old");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var link = Path.Combine(_temp, "link.txt");
        File.CreateSymbolicLink(link, path);

        AtomicFile.WriteAllText(path, "new");
        Assert.That(File.GetUnixFileMode(path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        AtomicFile.WriteAllText(link, "newer");
        Assert.That(File.GetUnixFileMode(path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead));
        Assert.That(File.ReadAllText(path), Is.EqualTo("newer"));
    }

    [Test]
    public void ALinkToAFolderIsRefusedAsAFolder()
    {
        var dir = Path.Combine(_temp, "dir");
        Directory.CreateDirectory(dir);
        var link = Path.Combine(_temp, "link");
        File.CreateSymbolicLink(link, dir);
        var e = Assert.Throws<IOException>(() => AtomicFile.WriteAllText(link, "x"))!;
        Assert.That(e.Message, Is.EqualTo($"{link}: is a directory; give a file name to write"));
    }

    [Test]
    public void MoveIntoPlaceFollowsTheLinkAndCleansUpOnFailure()
    {
        var real = Path.Combine(_temp, "real.bin");
        var link = Path.Combine(_temp, "link.bin");
        File.CreateSymbolicLink(link, real);
        var temp = AtomicFile.WriteTemporary(link, f => f.Write([1, 2, 3]));
        Assert.That(Path.GetDirectoryName(temp), Is.EqualTo(_temp));
        AtomicFile.MoveIntoPlace(temp, link);
        Assert.That(File.ReadAllBytes(real), Is.EqualTo(new byte[] { 1, 2, 3 }));

        var temp2 = AtomicFile.WriteTemporary(Path.Combine(_temp, "x.bin"), f => f.Write([4]));
        Assert.Throws<DirectoryNotFoundException>(() => AtomicFile.MoveIntoPlace(temp2, Path.Combine(_temp, "gone", "x.bin")));
        Assert.That(File.Exists(temp2), Is.False, "the temporary file is deleted when the move fails");
    }
}
