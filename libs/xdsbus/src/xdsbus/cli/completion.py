"""`xdsbus completion bash|zsh|fish`: a shell completion script generated from the parser itself, so it
offers exactly the subcommands and flags this installation has (installed subcommands included).

Each script holds three tables, keyed by the command path (`ledger log`): the subcommands, the flags,
and what follows a flag that takes a value (its choices, a file, or anything). Its function walks the
words typed so far through the tables, as argparse will, and offers what may come next.

    source <(xdsbus completion bash)          # ~/.bashrc
    source <(xdsbus completion zsh)           # ~/.zshrc, after compinit
    xdsbus completion fish | source           # ~/.config/fish/config.fish"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

HELP = "print a shell completion script (bash, zsh or fish)"
SHELLS = ("bash", "zsh", "fish")
# What a table says follows a flag: a file name, or anything (nothing to offer); else its choices.
FILE = "@file"
ANY = "-"


@dataclasses.dataclass(frozen=True)
class Flag:
    """A flag of one command: its spellings and what follows it (None: nothing)."""

    names: tuple[str, ...]
    value: str | None


@dataclasses.dataclass(frozen=True)
class Command:
    """A command path with its flags, its subcommands, and the words that may follow it with their help
    (the subcommands' names and the choices of a positional argument)."""

    path: str
    flags: tuple[Flag, ...]
    commands: tuple[Command, ...]
    words: tuple[tuple[str, str], ...]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The shell to generate for."""
    parser.add_argument("shell", choices=SHELLS)


def run(args: argparse.Namespace) -> int:
    """Print the script for `args.shell` from the parser `args.root` (set by the CLI)."""
    tree = command_tree(args.root)
    sys.stdout.write({"bash": bash, "zsh": zsh, "fish": fish}[args.shell](tree, args.root.prog))
    return 0


def command_tree(parser: argparse.ArgumentParser, path: str = "") -> Command:
    """The commands and flags under `parser` (argparse keeps them in private fields only)."""
    flags = []
    commands = []
    words: list[tuple[str, str]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                commands.append(command_tree(sub, f"{path} {name}".strip()))
                words.append((name, _one_line(helps.get(name, ""))))
        elif action.option_strings:
            if action.help != argparse.SUPPRESS:
                flags.append(Flag(tuple(action.option_strings), _value(action)))
        elif action.choices is not None:
            words += [(str(choice), "") for choice in action.choices]
    return Command(path, tuple(flags), tuple(commands), tuple(words))


def _value(action: argparse.Action) -> str | None:
    if action.nargs == 0:
        return None
    if action.choices is not None:
        return " ".join(str(c) for c in action.choices)
    return FILE if action.type is Path else ANY


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fish_quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _walk(tree: Command) -> list[Command]:
    return [tree, *(c for sub in tree.commands for c in _walk(sub))]


def _values(tree: Command) -> dict[str, list[str]]:
    """`path|flag` keys grouped by what follows the flag."""
    grouped: dict[str, list[str]] = {}
    for command in _walk(tree):
        for flag in command.flags:
            if flag.value is not None:
                grouped.setdefault(flag.value, []).extend(f"{command.path}|{n}" for n in flag.names)
    return grouped


def _sh_tables(tree: Command, prog: str) -> str:
    """The tables as POSIX-shell `case` functions (bash and zsh read the same)."""
    name = prog.replace("-", "_")
    commands = "\n".join(
        f"        '{c.path}') echo '{' '.join(word for word, _ in c.words)}' ;;"
        for c in _walk(tree)
        if c.words
    )
    flags = "\n".join(
        f"        '{c.path}') echo '{' '.join(n for f in c.flags for n in f.names)}' ;;" for c in _walk(tree)
    )
    values = "\n".join(
        f"        {'|'.join(repr(k) for k in keys)}) echo '{value}' ;;"
        for value, keys in sorted(_values(tree).items())
    )
    return f"""_{name}_commands() {{
    case "$1" in
{commands}
    esac
}}
_{name}_flags() {{
    case "$1" in
{flags}
    esac
}}
# What follows a flag ("PATH|FLAG"): its choices, {FILE} (a file) or {ANY} (anything); status 1 when
# the flag takes no value.
_{name}_value() {{
    case "$1" in
{values}
        *) return 1 ;;
    esac
}}
# The command path of words 2..$2-1 of the array named by $1 (the flags and their values skipped).
_{name}_path() {{
    local cmdpath="" word sub value skip=0 i
    for ((i = $3; i < $2; i++)); do
        eval "word=\\"\\${{$1[i]}}\\""
        if [ "$skip" = 1 ]; then skip=0; continue; fi
        if value=$(_{name}_value "$cmdpath|$word"); then skip=1; continue; fi
        for sub in $(_{name}_commands "$cmdpath"); do
            if [ "$sub" = "$word" ]; then cmdpath="${{cmdpath:+$cmdpath }}$word"; break; fi
        done
    done
    echo "$cmdpath"
}}
"""


def bash(tree: Command, prog: str) -> str:
    """The bash completion script."""
    name = prog.replace("-", "_")
    return f"""# bash completion for {prog}, generated by `{prog} completion bash`
{_sh_tables(tree, prog)}
_{name}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" cmdpath value
    cmdpath=$(_{name}_path COMP_WORDS "$COMP_CWORD" 1)
    COMPREPLY=()
    if [ "$COMP_CWORD" -gt 1 ] && value=$(_{name}_value "$cmdpath|$prev"); then
        case "$value" in
            {FILE}) COMPREPLY=($(compgen -f -- "$cur")) ;;
            {ANY}) ;;
            *) COMPREPLY=($(compgen -W "$value" -- "$cur")) ;;
        esac
    elif [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$(_{name}_flags "$cmdpath")" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$(_{name}_commands "$cmdpath")" -- "$cur"))
    fi
}}
# -o default: file names where nothing else is offered (dump's directory, --dump DIR).
complete -o default -F _{name} {prog}
"""


def zsh(tree: Command, prog: str) -> str:
    """The zsh completion script (native: `words` and `compadd`, no bashcompinit)."""
    name = prog.replace("-", "_")
    return f"""#compdef {prog}
# zsh completion for {prog}, generated by `{prog} completion zsh`
{_sh_tables(tree, prog)}
_{name}() {{
    local cur="${{words[CURRENT]}}" prev="${{words[CURRENT-1]}}" cmdpath value subs
    cmdpath=$(_{name}_path words "$CURRENT" 2)
    if (( CURRENT > 2 )) && value=$(_{name}_value "$cmdpath|$prev"); then
        case "$value" in
            {FILE}) _files ;;
            {ANY}) ;;
            *) compadd -- ${{=value}} ;;
        esac
    elif [[ "$cur" == -* ]]; then
        compadd -- $(_{name}_flags "$cmdpath")
    else
        subs=$(_{name}_commands "$cmdpath")
        if [[ -n "$subs" ]]; then compadd -- ${{=subs}}; else _files; fi
    fi
}}
compdef _{name} {prog}
"""


def fish(tree: Command, prog: str) -> str:
    """The fish completion script, subcommands with their help."""
    name = prog.replace("-", "_")
    commands = "\n".join(
        f"        case '{c.path}'\n"
        + "\n".join(f"            printf '%s\\t%s\\n' {word} {_fish_quoted(help)}" for word, help in c.words)
        for c in _walk(tree)
        if c.words
    )
    flags = "\n".join(
        f"        case '{c.path}'\n            printf '%s\\n' {' '.join(n for f in c.flags for n in f.names)}"
        for c in _walk(tree)
    )
    values = "\n".join(
        f"        case {' '.join(repr(k) for k in keys)}\n            printf '%s\\n' {value}"
        for value, keys in sorted(_values(tree).items())
    )
    return f"""# fish completion for {prog}, generated by `{prog} completion fish`
function __{name}_commands --argument-names cmdpath
    switch "$cmdpath"
{commands}
    end
end
function __{name}_flags --argument-names cmdpath
    switch "$cmdpath"
{flags}
    end
end
function __{name}_value --argument-names key
    switch "$key"
{values}
        case '*'
            return 1
    end
end
function __{name}_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    set -l cmdpath ''
    set -l skip 0
    for word in $words[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        if __{name}_value "$cmdpath|$word" >/dev/null
            set skip 1
            continue
        end
        for sub in (__{name}_commands "$cmdpath" | string replace -r '\\t.*' '')
            if test "$sub" = "$word"
                set cmdpath (string trim -- "$cmdpath $word")
                break
            end
        end
    end
    if test (count $words) -gt 1
        set -l value (__{name}_value "$cmdpath|$words[-1]")
        if test $status -eq 0
            switch "$value"
                case '{FILE}'
                    __fish_complete_path $cur
                case '{ANY}'
                case '*'
                    string split ' ' -- $value
            end
            return
        end
    end
    if string match -q -- '-*' $cur
        __{name}_flags "$cmdpath"
    else
        set -l subs (__{name}_commands "$cmdpath")
        if test (count $subs) -gt 0
            printf '%s\\n' $subs
        else
            __fish_complete_path $cur
        end
    end
end
complete -c {prog} -f -a '(__{name}_complete)'
"""
