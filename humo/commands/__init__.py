"""One module per `humo` subcommand: `configure(parser)` and `run(args)`."""
