using System.Text;

namespace Parrot.Tensors.Formats;

/// <summary>
/// Writes a file so that a crash never leaves half of it: the bytes go to a temporary file in the same
/// folder (so the final rename stays on one file system and is atomic), are flushed to disk, and the
/// temporary file is renamed over the target. Readers see the old file or the complete new one, never a torn one.
/// </summary>
public static class AtomicFile
{
    private static readonly UTF8Encoding Utf8NoBom = new(encoderShouldEmitUTF8Identifier: false);

    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, atomically. The folder must exist.</summary>
    public static void Write(string path, Action<FileStream> write)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(write);
        string temp = WriteTemporary(path, write);
        try { File.Move(temp, Path.GetFullPath(path), overwrite: true); }
        catch
        {
            TryDelete(temp);
            throw;
        }
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
    /// Writes the bytes meant for <paramref name="path"/> into a fresh temporary file beside it and returns
    /// the temporary file's path; the caller renames it into place (or deletes it). Used to put several files
    /// in place together (the shards of a checkpoint).
    /// </summary>
    public static string WriteTemporary(string path, Action<FileStream> write)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(write);
        string full = Path.GetFullPath(path);
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
            return temp;
        }
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
}
