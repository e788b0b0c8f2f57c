using System.Globalization;

namespace Parrot.Cli;

/// <summary>Parsing `--tokens 1,2,3` lists.</summary>
internal static class TokenIds
{
    public static int[] Parse(string text, string option = "--tokens")
    {
        if (string.IsNullOrWhiteSpace(text)) throw new CliException($"{option} is empty: give comma-separated token ids, e.g. {option} 1,2,3");
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out ids[i]))
                throw new CliException($"{option}: '{parts[i]}' (item {i + 1}) is not an integer token id");
        return ids;
    }
}
