return Runtime.Cli.RtCommand.Run(args);
