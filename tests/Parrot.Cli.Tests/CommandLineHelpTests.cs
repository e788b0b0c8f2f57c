using System.CommandLine;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Parrot.Cli.Tests;

/// <summary>
/// The command line as a new user meets it: every command's help, the usage errors, and the README's command lines
/// against the parser (every command it names exists, every flag it shows is accepted, every default it shows is
/// the code's, every command the dispatcher knows is shown).
/// </summary>
public class CommandLineHelpTests
{
    private static string[] Words(string path) => path.Split(' ').Skip(1).ToArray(); // "parrot bench gemm" → bench gemm

    // Windows-style aliases (/h, /?) are accepted but not shown.
    private static IEnumerable<string> Names(Option option) => option.Aliases.Prepend(option.Name).Where(n => !n.StartsWith('/')).Distinct();

    [Test]
    public void EveryCommandsHelpExitsZeroAndNamesEveryFlagItAccepts()
    {
        var root = ParrotCommandLine.CreateRoot();
        var commands = ParrotCommandLine.AllCommands(root).ToList();
        Assert.That(commands.Select(c => c.Path), Does.Contain("parrot bench gemm").And.Contain("parrot dist-check").And.Contain("parrot help"));
        foreach (var (path, command) in commands)
        {
            var (code, stdout, stderr) = CliInProcess.Run([.. Words(path), "--help"]);
            Assert.That(code, Is.EqualTo(0), $"{path} --help: {stderr}");
            Assert.That(stderr, Is.Empty, $"{path} --help writes to standard output only");
            // The usage line starts with the process's name (the test host's here, parrot when run as parrot).
            Assert.That(stdout, Does.Contain("Usage:").And.Contain(string.Join(' ', Words(path)) + " "), path);
            Assert.That(command.Description, Is.Not.Null.And.Not.Empty, $"{path} has no description");
            var lines = stdout.Split('\n');
            foreach (var option in command.Options)
            {
                Assert.That(option.Hidden, Is.False, $"{path}: {option.Name} is accepted but hidden from the help");
                Assert.That(option.Description, Is.Not.Null.And.Not.Empty, $"{path}: {option.Name} has no description");
                foreach (var name in Names(option))
                {
                    var line = lines.FirstOrDefault(l => Regex.IsMatch(l, $@"(^|[\s,]){Regex.Escape(name)}([\s,]|$)"));
                    Assert.That(line, Is.Not.Null, $"{path} --help does not name {name}:\n{stdout}");
                    if (option.Required) Assert.That(line, Does.Contain("(REQUIRED)"), $"{path} --help does not say {name} is required");
                }
            }
            foreach (var sub in command.Subcommands)
                Assert.That(stdout, Does.Match($@"\n\s+{Regex.Escape(sub.Name)}\s"), $"{path} --help does not list {sub.Name}");
        }
    }

    [Test]
    public void BareParrotAndHelpPrintHelpAndExitZeroAndAGroupWithoutItsSubcommandIsAUsageError()
    {
        var (code, stdout, stderr) = CliInProcess.Run("--help");
        Assert.That(code, Is.EqualTo(0));
        string rootHelp = stdout;
        Assert.That(rootHelp, Does.Contain("demo").And.Contain("make-world").And.Contain("bench"));
        foreach (string[] args in new[] { [], ["help"], new[] { "-h" } })
        {
            (code, stdout, stderr) = CliInProcess.Run(args);
            Assert.That((code, stderr, stdout), Is.EqualTo((0, "", rootHelp)), $"parrot {string.Join(' ', args)}");
        }
        (code, stdout, stderr) = CliInProcess.Run("train", "--help");
        string trainHelp = stdout;
        Assert.That(CliInProcess.Run("help", "train"), Is.EqualTo((0, trainHelp, "")));
        // A missing subcommand is a usage error, as an unknown one is ("parrot bench foo"); a bare parrot is the way in.
        (code, stdout, stderr) = CliInProcess.Run("bench");
        Assert.That((code, stdout), Is.EqualTo((2, "")));
        Assert.That(stderr, Is.EqualTo("parrot bench: give a subcommand: gemm, train, ops, decoder, vit or tiny (see 'parrot bench --help')\n"));
        (code, stdout, _) = CliInProcess.Run("bench", "--help");
        Assert.That(code, Is.EqualTo(0));
        Assert.That(stdout, Does.Contain("gemm").And.Contain("decoder").And.Contain("tiny").And.Not.Contain("peer"));
        Assert.That(CliInProcess.Run("help", "bench", "gemm"), Is.EqualTo(CliInProcess.Run("bench", "gemm", "--help")));
        (code, stdout, stderr) = CliInProcess.Run("help", "trian");
        Assert.That((code, stdout), Is.EqualTo((2, "")));
        Assert.That(stderr.TrimEnd(), Is.EqualTo("parrot help: unknown command 'trian' (see 'parrot --help')"));
    }

    [TestCase("frobnicate", "parrot: Unrecognized command or argument 'frobnicate'.")]
    [TestCase("trian", "Did you mean 'train'")]
    [TestCase("demo --frob", "parrot demo: Unrecognized command or argument '--frob'.")]
    [TestCase("generate --model m --tokens 1 --max-new 3", "Did you mean '--max-new-tokens' for '--max-new'?")]
    [TestCase("generate --model m --tokens 1 --max-new-tokens abc", "parrot generate: Cannot parse argument 'abc' for option '--max-new-tokens'")]
    [TestCase("make-world --out w --text-format html", "Argument 'html' not recognized. Must be one of: 'plain' 'chatml'")]
    [TestCase("train --stage 1 --model m --data d --images i --out o --recipe llava", "Argument 'llava' not recognized. Must be one of: 'parrot-7b'")]
    [TestCase("bench gemm --dtype f16", "parrot bench gemm: Argument 'f16' not recognized.")]
    public void AUsageErrorIsOneLineOnStandardErrorWithExitCode2(string commandLine, string expected)
    {
        var (code, stdout, stderr) = CliInProcess.Run(commandLine.Split(' '));
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stdout, Is.Empty, "no help dump after the error");
        Assert.That(stderr.TrimEnd('\n'), Does.Not.Contain('\n'), "one line");
        Assert.That(stderr, Does.Contain(expected).And.EndWith("--help')\n"));
    }

    [Test]
    public void EveryCommandWithRequiredFlagsNamesThemAllWhenGivenNone()
    {
        int checkedCommands = 0;
        foreach (var (path, command) in ParrotCommandLine.AllCommands(ParrotCommandLine.CreateRoot()))
        {
            var required = command.Options.Where(o => o.Required).ToList();
            if (required.Count == 0) continue;
            var (code, stdout, stderr) = CliInProcess.Run(Words(path));
            Assert.That((code, stdout), Is.EqualTo((2, "")), $"{path}: {stderr}");
            Assert.That(stderr, Does.StartWith(path + ": "));
            Assert.That(stderr.TrimEnd('\n'), Does.Not.Contain('\n'), path);
            foreach (var option in required) Assert.That(stderr, Does.Contain($"'{option.Name}' is required"), path);
            checkedCommands++;
        }
        Assert.That(checkedCommands, Is.GreaterThanOrEqualTo(10));
    }

    /// <summary>The built program, as a user runs it: the process's streams and exit codes, no stack trace.</summary>
    [Test]
    public void TheProgramSeparatesHelpFromErrors()
    {
        var r = CliRunner.Run(null);
        Assert.That((r.ExitCode, r.Stderr), Is.EqualTo((0, "")));
        Assert.That(r.Stdout, Does.Contain("Usage:").And.Contain("make-world"));
        r = CliRunner.Run(null, "tokenize", "--help");
        Assert.That((r.ExitCode, r.Stderr), Is.EqualTo((0, "")));
        Assert.That(r.Stdout, Does.Contain("--tokenizer").And.Contain("--special-as-text"));
        r = CliRunner.Run(null, "forward", "--tokens", "1,2");
        Assert.That((r.ExitCode, r.Stdout), Is.EqualTo((2, "")));
        Assert.That(r.Stderr, Does.StartWith("parrot forward: Option '--model' is required. Option '--out' is required."));
        Assert.That(r.Stderr, Does.Not.Contain("   at "));
    }

    /// <summary>
    /// lm-demo's failures are messages (before: an --out it cannot create was an unhandled exception with a stack
    /// trace), and a run shorter than 10 steps reports the memory of a step it measured (before: "at step 10: 0.0 MB").
    /// </summary>
    [Test]
    public void LmDemoReportsBadInputsClearlyAndAShortRunsMemory()
    {
        string dir = CliRunner.TempDir();
        string blocker = Path.Combine(dir, "file");
        File.WriteAllText(blocker, "not a folder");
        var r = CliRunner.Run(null, "lm-demo", "--steps", "1", "--out", Path.Combine(blocker, "out"));
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stderr, Does.StartWith($"parrot lm-demo: --out {Path.Combine(blocker, "out")}: cannot create the directory"));
        Assert.That(r.Stderr, Does.Not.Contain("   at ").And.Not.Contain("Unhandled"));
        r = CliRunner.Run(null, "lm-demo", "--steps", "2", "--hidden", "48");
        Assert.That((r.ExitCode, r.Stderr.TrimEnd()), Is.EqualTo((2, "parrot lm-demo: --steps, --batch and --layers must be positive, --seq ≥ 2, --hidden a positive multiple of 32")));

        r = CliRunner.Run(null, "lm-demo", "--steps", "2", "--batch", "2", "--seq", "8", "--hidden", "32", "--layers", "1", "--out", Path.Combine(dir, "lm"));
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        var memory = Regex.Match(r.Stdout, @"tensor memory in use at step (\d+): ([\d.]+) MB");
        Assert.That(memory.Success, Is.True, r.Stdout);
        Assert.That(memory.Groups[1].Value, Is.EqualTo("2"));
        Assert.That(double.Parse(memory.Groups[2].Value, CultureInfo.InvariantCulture), Is.GreaterThan(0), "the weights are in use");
        Directory.Delete(dir, true);
    }

    /// <summary>selftest's --device is read as the model commands read it (before: "unknown device" with exit code 1).</summary>
    [Test]
    public void SelfTestRefusesAnUnknownDeviceAsAUsageError()
    {
        var r = CliRunner.Run(null, "selftest", "--device", "gpu");
        Assert.That((r.ExitCode, r.Stdout, r.Stderr.TrimEnd()), Is.EqualTo((2, "", "parrot selftest: --device: 'gpu' is not a device; expected cpu, cuda or cuda:N")));
    }

    /// <summary>An out-of-range --prefill length was an unhandled OverflowException with a stack trace.</summary>
    [Test]
    public void BenchDecoderRefusesAnOverflowingPrefillClearly()
    {
        var r = CliRunner.Run(null, "bench", "decoder", "--prefill", "99999999999");
        Assert.That((r.ExitCode, r.Stderr.TrimEnd()), Is.EqualTo((2, "parrot bench decoder: --prefill must be comma-separated integers")));
    }

    // ---- the README against the parser ----

    private sealed record Invocation(string Text, Command? Command, string Path);

    [Test]
    public void TheReadmesCommandLinesUseOnlyCommandsFlagsAndDefaultsTheParserHas()
    {
        var root = ParrotCommandLine.CreateRoot();
        var invocations = ReadmeInvocations(root, out var unknown);
        Assert.That(unknown, Is.Empty, "README commands the dispatcher does not know");
        Assert.That(invocations, Has.Count.GreaterThan(30));
        var problems = new List<string>();
        foreach (var inv in invocations.Where(i => i.Command is not null))
        {
            var accepted = inv.Command!.Options.SelectMany(Names).Concat(["--help", "-h", "-?"]).ToHashSet();
            foreach (Match m in Regex.Matches(inv.Text, @"(?<open>\[)?(?<flag>--[a-z][a-z0-9-]*)(?:[ =](?<value>'[^']*'|[^\s\[\]]+))?"))
            {
                string flag = m.Groups["flag"].Value;
                var option = inv.Command.Options.FirstOrDefault(o => Names(o).Contains(flag));
                if (option is null)
                {
                    if (!accepted.Contains(flag)) problems.Add($"{inv.Path}: the README shows {flag}, which the parser does not accept ({inv.Text})");
                    continue;
                }
                string value = m.Groups["value"].Value.Trim('\'');
                // A default shown as [--flag VALUE] must be the code's (placeholders such as N, DIR, FILE.json are not defaults).
                if (!m.Groups["open"].Success || value.Length == 0 || value.StartsWith("--", StringComparison.Ordinal) || !option.HasDefaultValue
                    || Regex.IsMatch(value, @"^[A-Z][A-Z0-9_]*(\.[a-z]+)?$"))
                    continue;
                string actual = Convert.ToString(option.GetDefaultValue(), CultureInfo.InvariantCulture) ?? "";
                var shown = value.Contains('|', StringComparison.Ordinal) && !value.Contains(',', StringComparison.Ordinal) ? value.Split('|') : [value];
                if (!shown.Any(v => SameValue(v, actual)))
                    problems.Add($"{inv.Path}: the README shows [{flag} {value}] but the default is {actual}");
            }
        }
        var shownCommands = invocations.Select(i => i.Path).ToHashSet();
        foreach (var (path, command) in ParrotCommandLine.AllCommands(root))
            if (command.Subcommands.Count == 0 && !shownCommands.Contains(path))
                problems.Add($"{path}: the dispatcher knows it but the README never shows it");
        Assert.That(problems, Is.Empty);
    }

    private static bool SameValue(string shown, string actual) =>
        shown == actual
        || (double.TryParse(shown, NumberStyles.Float, CultureInfo.InvariantCulture, out double a)
            && double.TryParse(actual, NumberStyles.Float, CultureInfo.InvariantCulture, out double b) && a == b);

    /// <summary>
    /// Every `parrot ...` (or `dotnet parrot.dll ...`) command line of README.md: in indented code blocks (joined over
    /// trailing backslashes) and in inline code spans; cut at a shell comment, pipe or redirection.
    /// </summary>
    private static List<Invocation> ReadmeInvocations(RootCommand root, out List<string> unknown)
    {
        string dir = TestContext.CurrentContext.TestDirectory;
        while (!File.Exists(Path.Combine(dir, "ParrotNative.sln"))) dir = Path.GetDirectoryName(dir) ?? throw new FileNotFoundException("no ParrotNative.sln above the test directory");
        var lines = File.ReadAllLines(Path.Combine(dir, "README.md"));
        var snippets = new List<string>();
        var prose = new List<string>();
        bool fenced = false;
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].StartsWith("```", StringComparison.Ordinal)) { fenced = !fenced; continue; }
            if (fenced) continue;
            if (lines[i].StartsWith("    ", StringComparison.Ordinal))
            {
                string code = lines[i];
                while (code.EndsWith('\\') && i + 1 < lines.Length) code = code[..^1] + " " + lines[++i].Trim();
                snippets.Add(code);
            }
            else prose.Add(lines[i]);
        }
        snippets.AddRange(Regex.Matches(string.Join("\n", prose), "`([^`]+)`").Select(m => m.Groups[1].Value.Replace('\n', ' ').Replace("\\|", "|", StringComparison.Ordinal))); // \| : a pipe in a table cell

        var found = new List<Invocation>();
        unknown = [];
        foreach (string snippet in snippets)
        {
            string line = Regex.Split(snippet, @"\s#")[0]; // a shell comment is prose ("# parrot serve under 16 clients")
            foreach (Match m in Regex.Matches(line, @"(?:^|[\s(])parrot(?:\.dll)? +(?<rest>.*)"))
            {
                string rest = Regex.Split(m.Groups["rest"].Value, @" \| | < | > ")[0];
                rest = Regex.Replace(rest, @"\s+", " ").Trim();
                var words = rest.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (words.Length == 0 || words[0].StartsWith('-'))
                {
                    found.Add(new Invocation(rest, root, ParrotCommandLine.Name));
                    continue;
                }
                if (Regex.IsMatch(words[0], "^[A-Z]+$")) continue; // parrot COMMAND --help
                foreach (string name in words[0].Split('|'))
                {
                    var command = root.Subcommands.FirstOrDefault(c => c.Name == name);
                    if (command is null) { unknown.Add($"{name} ({snippet.Trim()})"); continue; }
                    string args = string.Join(' ', words.Skip(1));
                    if (command.Subcommands.Count > 0 && words.Length > 1 && !words[1].StartsWith('-'))
                    {
                        args = string.Join(' ', words.Skip(2));
                        foreach (string subName in words[1].Split('|'))
                        {
                            var sub = command.Subcommands.FirstOrDefault(c => c.Name == subName);
                            if (sub is null) unknown.Add($"{name} {subName} ({snippet.Trim()})");
                            else found.Add(new Invocation(args, sub, $"parrot {name} {subName}"));
                        }
                    }
                    else found.Add(new Invocation(args, command, $"parrot {name}"));
                }
            }
        }
        return found;
    }
}
