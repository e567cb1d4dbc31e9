"""The command-line parser of ``gvae`` and of the scripts in ``examples/``: every default in --help, and
each error one line."""
import argparse
import copy


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """--help with every flag's default, flags declared without help included, except where "(default:
    ...)" would say nothing: a required flag has none, and a flag whose default is None says in its own
    words what happens without it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.required or action.default is None or action.default is argparse.SUPPRESS
                or "%(default)" in text or "(default:" in text):
            return action.help
        default = action.default
        # As it is typed (--hidden 500 500), and with any % doubled: argparse expands the text with %.
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()

    def _format_action(self, action):
        if not action.help and action.option_strings and self._get_help_string(action):
            action = copy.copy(action)  # argparse shows no text at all for a flag without help
            action.help = self._get_help_string(action)
        return super()._format_action(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with every default in --help (:class:`DefaultsHelpFormatter`) and each error
    as one line, "PROG: error: WHAT (see PROG COMMAND --help)": the prefix of every other error of gvae,
    and no usage block of up to 19 lines before it."""

    def __init__(self, *args, formatter_class=DefaultsHelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog.split()[0]}: error: {message} (see {self.prog} --help)\n")

    def add_subparsers(self, **kwargs):
        kwargs.setdefault("parser_class", _CommandParser)
        return super().add_subparsers(**kwargs)


class _CommandParser(ArgumentParser):
    """The parser of one command (gvae train): it names what it does not know itself, pointing to its own
    --help (argparse hands a command's leftovers to the parser above, whose --help lists the commands)."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras
