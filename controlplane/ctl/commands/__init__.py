"""One module per command group. Each has `register(commands, everywhere)`, which adds its
parsers with `func` (the command) and, where argparse cannot express a rule, `check`
(returns what is wrong with the arguments, a usage error)."""
