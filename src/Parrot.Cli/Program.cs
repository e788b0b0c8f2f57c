using System.CommandLine;
using Parrot.Cli;

var root = new RootCommand("parrot — ParrotNative: a C# tensor engine and the Parrot multilingual multimodal LLM");
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(LmDemoCommand.Create());
root.Subcommands.Add(TrainLmCommand.Create());
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(ForwardCommand.Create());
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(ChatCommand.Create());
root.Subcommands.Add(TokenizeCommand.Create());
root.Subcommands.Add(MakeWorldCommand.Create());
root.Subcommands.Add(VisionCommand.Create());
root.Subcommands.Add(TrainTokenizerCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(PretrainVisionCommand.Create());
root.Subcommands.Add(SelfTestCommand.Create());
return root.Parse(args).Invoke();
