using System.CommandLine;
using Parrot.Cli;

var root = new RootCommand("parrot — ParrotNative: a C# tensor engine and the Parrot multilingual multimodal LLM");
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(TokenizeCommand.Create());
return root.Parse(args).Invoke();
