namespace Parrot.Cli.Demo;

/// <summary>
/// The tiny starting weights of the demo (and of `bench tiny`, which times them): a CLIP vision folder (config.json, preprocessor_config.json,
/// model.safetensors) in <c>vision/</c> and a Qwen2 folder with tokenizer.json in <c>lm/</c>, committed under
/// <c>assets/tiny/</c> (made by tools/make-tiny-assets.sh).
/// </summary>
internal sealed record DemoAssets(string Root, string Vision, string Lm)
{
    /// <summary>Where the assets live inside the repository.</summary>
    public const string RepoRelative = "assets/tiny";

    /// <summary>
    /// The assets in <paramref name="explicitDir"/> (--assets), else the first <c>assets/tiny</c> found in the
    /// working directory, the executable's directory or any folder above them. Errors say what is missing where.
    /// </summary>
    public static DemoAssets Locate(string? explicitDir)
    {
        if (explicitDir is not null)
        {
            if (!Directory.Exists(explicitDir)) throw new CliException($"--assets {explicitDir}: no such folder");
            return Check(Path.GetFullPath(explicitDir));
        }
        var tried = new List<string>();
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, RepoRelative);
                if (Directory.Exists(candidate)) return Check(candidate);
                tried.Add(dir.FullName);
            }
        throw new CliException($"the tiny starting weights ({RepoRelative}/vision and {RepoRelative}/lm) were not found in {Directory.GetCurrentDirectory()}, "
            + $"{AppContext.BaseDirectory} or any folder above them; run the command inside the repository, make them with tools/make-tiny-assets.sh, or pass --assets DIR");
    }

    private static DemoAssets Check(string root)
    {
        string vision = Path.Combine(root, "vision"), lm = Path.Combine(root, "lm");
        var required = new[]
        {
            Path.Combine(vision, "config.json"), Path.Combine(vision, "preprocessor_config.json"),
            Path.Combine(lm, "config.json"), Path.Combine(lm, "tokenizer.json"),
        };
        var missing = required.Where(f => !File.Exists(f)).ToList();
        if (!Directory.Exists(vision) || !Directory.EnumerateFiles(vision, "*.safetensors").Any()) missing.Add(Path.Combine(vision, "*.safetensors"));
        if (!Directory.Exists(lm) || !Directory.EnumerateFiles(lm, "*.safetensors").Any()) missing.Add(Path.Combine(lm, "*.safetensors"));
        if (missing.Count > 0)
            throw new CliException($"{root}: the tiny starting weights (demo, bench tiny) are incomplete; missing {string.Join(", ", missing)} (expected vision/ = a CLIP vision folder, lm/ = a Qwen2 folder with tokenizer.json)");
        return new DemoAssets(root, vision, lm);
    }
}
