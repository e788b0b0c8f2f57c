return Parrot.Cli.ParrotCommandLine.Run(args);
