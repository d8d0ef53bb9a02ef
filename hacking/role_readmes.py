"""Write each role's README.md from its meta/argument_specs.yml and meta/main.yml.

The argument specs are what Ansible validates a role's variables against, so they are the one
place a role's interface is written down; the READMEs (which Galaxy and Automation Hub need)
are generated from them and must not be edited by hand.

    python hacking/role_readmes.py          write every roles/*/README.md
    python hacking/role_readmes.py --check  exit 1 and name the READMEs that are out of date
"""

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Text above this line is the role's own (written by hand); everything below it is generated.
MARKER = ("<!-- Generated below from meta/argument_specs.yml by hacking/role_readmes.py "
          "(make readmes): edit the spec, not the text under this line. -->")
MARKUP = [(re.compile(r"[CVOEM]\(([^()]*)\)"), r"`\1`"),
          (re.compile(r"I\(([^()]*)\)"), r"*\1*"),
          (re.compile(r"B\(([^()]*)\)"), r"**\1**"),
          (re.compile(r"U\(([^()]*)\)"), r"<\1>"),
          (re.compile(r"L\(([^(),]*),\s*([^()]*)\)"), r"[\1](\2)")]


def text(value):
    """Ansible doc markup (a string or a list of paragraphs) as one Markdown string."""
    paragraphs = value if isinstance(value, list) else [value or ""]
    out = []
    for paragraph in paragraphs:
        paragraph = " ".join(str(paragraph).split())
        for pattern, replacement in MARKUP:
            paragraph = pattern.sub(replacement, paragraph)
        out.append(paragraph)
    return out


def cell(value):
    return " ".join(text(value)).replace("|", "\\|")


def default_of(spec):
    if "default" not in spec:
        return ""
    return "`" + yaml.safe_dump(spec["default"], default_flow_style=True).strip().removesuffix("...").strip() + "`"


def type_of(spec):
    kind = spec.get("type", "str")
    if kind == "list" and "elements" in spec:
        kind = f"list of {spec['elements']}"
    if "choices" in spec:
        kind += " (" + ", ".join(f"`{c}`" for c in spec["choices"]) + ")"
    return kind


def option_rows(options, prefix=""):
    for name, spec in options.items():
        yield (f"`{prefix}{name}`", type_of(spec), "yes" if spec.get("required") else "",
               default_of(spec), cell(spec.get("description", "")))
        if spec.get("options"):
            yield from option_rows(spec["options"], f"{prefix}{name}.")


def entry_point(role, name, spec):
    lines = [f"## Entry point `{name}`", ""]
    if spec.get("short_description"):
        lines += [cell(spec["short_description"]) + ".", ""]
    for paragraph in text(spec.get("description", [])):
        lines += [paragraph, ""]
    options = spec.get("options") or {}
    if options:
        lines += ["| Variable | Type | Required | Default | Description |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in option_rows(options)]
        lines.append("")
    required = [option for option, option_spec in options.items() if option_spec.get("required")]
    call = (f"    - ansible.builtin.include_role:\n        name: edgeml.fleet.{role}\n"
            + ("" if name == "main" else f"        tasks_from: {name}\n"))
    if required:
        call += "      vars:\n" + "".join(f"        {option}: ...\n" for option in required)
    lines += ["```yaml", "- hosts: edge", "  tasks:", call.rstrip("\n"), "```", ""]
    return lines


def hand_written(role_dir, galaxy):
    """The README's own text above the marker, or a title and the role's description."""
    readme = role_dir / "README.md"
    if readme.is_file() and MARKER in readme.read_text():
        return readme.read_text().split(MARKER)[0].rstrip("\n").split("\n")
    return [f"# edgeml.fleet.{role_dir.name}", "", galaxy["description"] + "."]


def render(role_dir):
    role = role_dir.name
    specs = yaml.safe_load((role_dir / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    galaxy = yaml.safe_load((role_dir / "meta" / "main.yml").read_text())["galaxy_info"]
    platforms = ", ".join(f"{p['name']} {' '.join(str(v) for v in p.get('versions', []))}".strip()
                          for p in galaxy.get("platforms", []))
    lines = hand_written(role_dir, galaxy) + [
        "", MARKER, "",
        f"Requires ansible-core {galaxy['min_ansible_version']} or later; tested on {platforms}. "
        "The collection's `docs/` explain how the roles work together.", ""]
    for name in ["main"] + sorted(n for n in specs if n != "main"):
        if name in specs:
            lines += entry_point(role, name, specs[name])
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv):
    check = "--check" in argv
    stale = []
    for role_dir in sorted((ROOT / "roles").iterdir()):
        if not (role_dir / "meta" / "argument_specs.yml").is_file():
            continue
        readme = role_dir / "README.md"
        wanted = render(role_dir)
        if readme.is_file() and readme.read_text() == wanted:
            continue
        stale.append(str(readme.relative_to(ROOT)))
        if not check:
            readme.write_text(wanted)
    if check and stale:
        print("out of date (run make readmes): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
