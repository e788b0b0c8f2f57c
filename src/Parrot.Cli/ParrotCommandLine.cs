using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;

namespace Parrot.Cli;

/// <summary>
/// The `parrot` command tree and how it is run: `--help` (or `parrot help [COMMAND]`, or a bare `parrot`) prints the
/// help to standard output and exits 0; a usage error (an unknown command or option, a missing required option or
/// subcommand, a value of the wrong type) is one line on standard error naming the command, with the nearest known
/// names when there is a likely typo, and exit code 2 — the code <see cref="CliErrors"/> gives a usage problem found later.
/// </summary>
internal static class ParrotCommandLine
{
    /// <summary>The name the help and the messages give the program.</summary>
    public const string Name = "parrot";

    /// <summary>Every command the program knows, in the order the help lists them.</summary>
    public static RootCommand CreateRoot()
    {
        var root = new RootCommand("parrot — ParrotNative: a C# tensor engine and the Parrot multilingual multimodal LLM");
        foreach (var command in new[]
        {
            DemoCommand.Create(), LmDemoCommand.Create(), MakeWorldCommand.Create(), TrainLmCommand.Create(), TrainCommand.Create(),
            PretrainVisionCommand.Create(), TrainTokenizerCommand.Create(), ForwardCommand.Create(), GenerateCommand.Create(),
            ChatCommand.Create(), VisionCommand.Create(), TokenizeCommand.Create(), EvalCommand.Create(), ServeCommand.Create(),
            BenchCommand.Create(), SelfTestCommand.Create(), DistCheckCommand.Create(),
        })
            root.Subcommands.Add(command);
        root.Subcommands.Add(HelpCommand(root));
        root.SetAction(p => new HelpAction().Invoke(p));
        foreach (var command in root.Subcommands) RequireSubcommand(root, command);
        return root;
    }

    /// <summary>Parses <paramref name="args"/> and runs the command they name; the exit code.</summary>
    public static int Run(string[] args, TextWriter? output = null, TextWriter? error = null)
    {
        var root = CreateRoot();
        var config = new InvocationConfiguration { Output = output ?? Console.Out, Error = error ?? Console.Error };
        var result = root.Parse(args);
        if (result.Action is ParseErrorAction)
        {
            config.Error.WriteLine(UsageError(root, result));
            return 2;
        }
        return result.Invoke(config);
    }

    /// <summary>The space-separated names from the root to <paramref name="target"/>, "parrot" first.</summary>
    public static string PathOf(Command root, Command target)
    {
        return Find(root, Name) ?? Name;

        string? Find(Command at, string path)
        {
            if (ReferenceEquals(at, target)) return path;
            foreach (var sub in at.Subcommands)
                if (Find(sub, $"{path} {sub.Name}") is { } found) return found;
            return null;
        }
    }

    /// <summary>Every command of the tree with its path ("parrot bench gemm"), the root first.</summary>
    public static IEnumerable<(string Path, Command Command)> AllCommands(Command root)
    {
        var pending = new Stack<(string, Command)>();
        pending.Push((Name, root));
        while (pending.Count > 0)
        {
            var (path, command) = pending.Pop();
            yield return (path, command);
            foreach (var sub in command.Subcommands.Reverse()) pending.Push(($"{path} {sub.Name}", sub));
        }
    }

    // One line: every error of the parse (System.CommandLine's own words), likely typos, and where the usage is.
    private static string UsageError(RootCommand root, ParseResult result)
    {
        var command = result.CommandResult.Command;
        string path = PathOf(root, command);
        // Some messages span lines (a value list: "Must be one of:\n\t'a'\n\t'b'"): one line is what a user, a log and a test read.
        var messages = result.Errors.Select(e => string.Join(" ", e.Message.Split((char[])['\n', '\r', '\t', ' '], StringSplitOptions.RemoveEmptyEntries))).Distinct().ToList();
        if (messages.Count == 0) messages.Add("the command line could not be parsed");
        string hints = string.Join(" ", result.UnmatchedTokens.Distinct().Select(token => Suggest(command, token)).OfType<string>());
        return $"{path}: {string.Join(" ", messages)}{(hints.Length > 0 ? " " + hints : "")} (see '{path} --help')";
    }

    // "Did you mean ...?" for a token one or two edits away from an option or subcommand name of the command.
    private static string? Suggest(Command command, string token)
    {
        var names = command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name)
            .Concat(command.Options.Where(o => !o.Hidden).SelectMany(o => o.Aliases.Prepend(o.Name)))
            .Distinct().ToList();
        var near = names.Where(n => n.Length > 2 && (EditDistance(n, token) <= (n.Length >= 5 ? 2 : 1) || (token.Length >= 4 && n.StartsWith(token, StringComparison.Ordinal))))
            .OrderBy(n => EditDistance(n, token)).Take(3).ToList();
        return near.Count == 0 ? null : $"Did you mean {string.Join(" or ", near.Select(n => $"'{n}'"))} for '{token}'?";
    }

    private static int EditDistance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }

    // `parrot help [COMMAND ...]`: the help of the root or of the command named.
    private static Command HelpCommand(RootCommand root)
    {
        var names = new Argument<string[]>("command") { Description = "The command (and subcommand) to describe, e.g. train or bench gemm", Arity = ArgumentArity.ZeroOrMore };
        var help = new Command("help", "Show the help of parrot or of one command (the same as parrot COMMAND --help)");
        help.Arguments.Add(names);
        help.SetAction(p =>
        {
            var path = p.GetValue(names) ?? [];
            Command at = root;
            foreach (var name in path)
            {
                var next = at.Subcommands.FirstOrDefault(c => c.Name == name || c.Aliases.Contains(name));
                if (next is null || next.Name == "help")
                {
                    p.InvocationConfiguration.Error.WriteLine($"{PathOf(root, at)} help: unknown command '{name}' (see '{PathOf(root, at)} --help')");
                    return 2;
                }
                at = next;
            }
            return root.Parse([.. path, "--help"]).Invoke(p.InvocationConfiguration);
        });
        return help;
    }

    // A bare `parrot` prints the help (the way in for a new user); a command group (bench) without its subcommand is a
    // usage error, as an unknown subcommand is: it printed the help and exited 0, so a script's typo'd call "succeeded".
    private static void RequireSubcommand(RootCommand root, Command command)
    {
        if (command.Action is null && command.Subcommands.Count > 0)
            command.SetAction(p =>
            {
                string path = PathOf(root, command), names = string.Join(", ", command.Subcommands.Select(c => c.Name));
                int last = names.LastIndexOf(", ", StringComparison.Ordinal);
                if (last >= 0) names = names[..last] + " or " + names[(last + 2)..];
                p.InvocationConfiguration.Error.WriteLine($"{path}: give a subcommand: {names} (see '{path} --help')");
                return 2;
            });
        foreach (var sub in command.Subcommands) RequireSubcommand(root, sub);
    }
}
