namespace Parrot.Cli;

/// <summary>
/// Whether two folder paths a user typed are one folder, however spelled: relative or full, with <c>.</c>, <c>..</c>,
/// a trailing separator, or through symbolic links (a link to the folder, or a linked folder on the way to it).
/// The training commands use it to refuse an --out that would overwrite the --model they start from.
/// </summary>
internal static class OutputFolders
{
    private const int MaxLinksFollowed = 40;

    /// <summary>
    /// Refuses (a usage error, exit 2) an <paramref name="output"/> that is the <paramref name="model"/> folder:
    /// writing the <paramref name="what"/> there would overwrite the checkpoint the run starts from.
    /// </summary>
    public static void RefuseModelFolder(string model, string output, string what)
    {
        if (SameFolder(model, output))
            throw new CliException($"--out is the --model folder ({RealPath(model)}); write the {what} to another folder (the source checkpoint would be overwritten)");
    }

    /// <summary>Whether <paramref name="a"/> and <paramref name="b"/> name one folder (compared as <see cref="RealPath"/>s).</summary>
    public static bool SameFolder(string a, string b) =>
        string.Equals(RealPath(a), RealPath(b), OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);

    /// <summary>
    /// The full path of <paramref name="path"/> with every symbolic link along it followed, as the file system walks it:
    /// a <c>..</c> after a link goes up from the link's target, not from the link. Parts that do not exist (yet) are kept
    /// as written; a chain of links too long (a loop) stops being followed.
    /// </summary>
    public static string RealPath(string path)
    {
        string full = Path.Combine(Directory.GetCurrentDirectory(), path); // not GetFullPath: that takes ".." before links
        string root = Path.GetPathRoot(full) ?? "";
        string current = root;
        int followed = 0;
        var parts = new Stack<string>(full[root.Length..]
            .Split([Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar], StringSplitOptions.RemoveEmptyEntries).Reverse());
        while (parts.TryPop(out var part))
        {
            if (part == ".") continue;
            if (part == "..")
            {
                current = Path.GetDirectoryName(current) ?? current; // the root's parent is the root
                continue;
            }
            string next = Path.Combine(current, part);
            string? link = followed < MaxLinksFollowed ? new FileInfo(next).LinkTarget : null;
            if (link is null)
            {
                current = next;
                continue;
            }
            followed++;
            // The target's parts replace the link's: an absolute target restarts from its root, a relative one from the link's folder.
            if (Path.IsPathRooted(link))
            {
                current = Path.GetPathRoot(link) ?? root;
                link = link[current.Length..];
            }
            foreach (var p in link.Split([Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar], StringSplitOptions.RemoveEmptyEntries).Reverse())
                parts.Push(p);
        }
        return Path.TrimEndingDirectorySeparator(current.Length == 0 ? root : current);
    }
}
