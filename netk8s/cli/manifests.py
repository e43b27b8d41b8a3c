"""Reading manifests for `apply -f` / `delete -f`: files, directories and stdin, parsed by model.manifest."""

from __future__ import annotations

from pathlib import Path

from netk8s.errors import ValidationError
from netk8s.model.manifest import MANIFEST_SUFFIXES, STDIN_ORIGIN, parse_manifest, parse_text


def _read(path: Path, origin: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{origin}: not UTF-8 text") from None
    except OSError as err:
        raise ValidationError(f"{origin}: cannot read: {err.strerror or err}") from None


def _load_file(path: Path, origin: str) -> list[tuple[str, dict]]:
    return parse_manifest(_read(path, origin), origin, path.suffix)


def load_documents(sources: list[str], stdin_text: str | None = None) -> list[tuple[str, dict]]:
    """Load every object from files, directories (their *.yaml/*.yml/*.json, sorted, not recursive)
    and "-" (stdin_text), in order, as (origin, object)."""
    out: list[tuple[str, dict]] = []
    for source in sources:
        if source == "-":
            if stdin_text is None:
                raise ValidationError("-f -: no standard input was given")
            out.extend(parse_text(stdin_text, STDIN_ORIGIN))
            continue
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES)
            for f in files:
                out.extend(_load_file(f, str(f)))
        elif path.exists():
            out.extend(_load_file(path, source))
        else:
            raise ValidationError(f"-f {source}: the path does not exist")
    return out
