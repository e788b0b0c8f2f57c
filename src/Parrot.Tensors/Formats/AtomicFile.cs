using System.Text;

namespace Parrot.Tensors.Formats;

/// <summary>
/// Writes a file so that a crash never leaves half of it: the bytes go to a temporary file in the same
/// folder (so the final rename stays on one file system and is atomic), are flushed to disk, and the
/// temporary file is renamed over the target. Readers see the old file or the complete new one, never a torn one.
/// Apart from atomicity the result is what an in-place rewrite would leave: a symbolic link is written through
/// (a rename onto the link itself would put a plain file in its place and leave the file it points at stale),
/// and a file that exists keeps its permissions (a fresh file gets the umask's, which would make a file kept
/// private readable by others).
/// </summary>
public static class AtomicFile
{
    private static readonly UTF8Encoding Utf8NoBom = new(encoderShouldEmitUTF8Identifier: false);

    /// <summary>How many symbolic links in a row are followed before the path is refused as a loop (Linux's own limit).</summary>
    private const int MaxLinksFollowed = 40;

    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, atomically. The folder must exist.</summary>
    public static void Write(string path, Action<FileStream> write)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(write);
        MoveIntoPlace(WriteTemporary(path, write), path);
    }

    /// <summary>
    /// Copies the file <paramref name="from"/> to <paramref name="to"/>, atomically, streaming (a large file is never
    /// held in memory). A copy onto the file itself (the same full path) does nothing.
    /// </summary>
    public static void Copy(string from, string to)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        if (string.Equals(Path.GetFullPath(from), Path.GetFullPath(to), StringComparison.Ordinal)) return;
        using var source = File.OpenRead(from);
        Write(to, target => source.CopyTo(target));
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/>, atomically.</summary>
    public static void WriteAllBytes(string path, byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        Write(path, file => file.Write(bytes));
    }

    /// <summary>Writes <paramref name="text"/> to <paramref name="path"/> as UTF-8 without a byte-order mark, atomically.</summary>
    public static void WriteAllText(string path, string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        WriteAllBytes(path, Utf8NoBom.GetBytes(text));
    }

    /// <summary>
    /// Writes the bytes meant for <paramref name="path"/> into a fresh temporary file beside the file it names
    /// (beside a symbolic link's target, so the rename stays within one folder) and returns the temporary file's
    /// path, already holding the mode of the file it will replace. The caller puts it in place with
    /// <see cref="MoveIntoPlace"/> (or deletes it). Used to put several files in place together (the shards of a checkpoint).
    /// </summary>
    public static string WriteTemporary(string path, Action<FileStream> write)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(write);
        string full = FinalTarget(path);
        string folder = Path.GetDirectoryName(full) ?? ".";
        // Said in terms of the file asked for: the system's own errors name the hidden temporary file
        // ("Could not find a part of the path '/x/.out.npy.<guid>.tmp'") or come only after all the work.
        if (Directory.Exists(full)) throw new IOException($"{path}: is a directory; give a file name to write");
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{path}: the folder {folder} does not exist");
        string temp = Path.Combine(folder, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        FileStream created;
        try { created = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20); }
        catch (UnauthorizedAccessException e) { throw new UnauthorizedAccessException($"{path}: cannot write in the folder {folder}: {e.Message}", e); }
        try
        {
            using (var file = created)
            {
                write(file);
                file.Flush(flushToDisk: true);
            }
            if (!OperatingSystem.IsWindows() && File.Exists(full)) File.SetUnixFileMode(temp, File.GetUnixFileMode(full));
            return temp;
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>
    /// Renames <paramref name="temp"/> (from <see cref="WriteTemporary"/> for the same path) over the file
    /// <paramref name="path"/> names, following symbolic links as <see cref="WriteTemporary"/> did; on failure the
    /// temporary file is deleted and the error rethrown.
    /// </summary>
    public static void MoveIntoPlace(string temp, string path)
    {
        ArgumentNullException.ThrowIfNull(temp);
        ArgumentNullException.ThrowIfNull(path);
        try { File.Move(temp, FinalTarget(path), overwrite: true); }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>Deletes <paramref name="path"/> if it can; cleanup must not hide the error that caused it.</summary>
    public static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>
    /// The full path of the file a write to <paramref name="path"/> lands in: <paramref name="path"/> itself, or, where it
    /// is a symbolic link, the file at the end of its chain of links (relative targets taken from the link's own folder;
    /// a dangling link's target is created). Folders along the way need no resolving: the rename happens inside the
    /// final file's folder whichever way it was reached.
    /// </summary>
    private static string FinalTarget(string path)
    {
        string current = Path.GetFullPath(path);
        for (int followed = 0; ; followed++)
        {
            var info = new FileInfo(current);
            string? link = info.LinkTarget;
            if (link is null) return current;
            if (followed == MaxLinksFollowed)
                throw new IOException($"{path}: more than {MaxLinksFollowed} symbolic links in a row (a loop?); give the file itself");
            current = Path.GetFullPath(link, Path.GetDirectoryName(current) ?? "/");
        }
    }
}
