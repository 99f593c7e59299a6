"""Input problems: every one found is reported at once, naming file, location and field."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from stt2v_ray.storage import redact_text


@dataclass(frozen=True)
class InputIssue:
    file: str        # the manifest / Parquet file, or "--set"
    location: str    # "prompts[3]", "row 17" (0-based across the dataset), "settings", "line 4", or ""
    field: str       # dotted field name, or "" when the problem is not about one field
    message: str

    def __post_init__(self) -> None:
        # Credentials in a URI (user:password@, signed query strings) never reach an error message.
        object.__setattr__(self, "file", redact_text(str(self.file)))
        object.__setattr__(self, "message", redact_text(str(self.message)))

    def __str__(self) -> str:
        return ": ".join(part for part in (self.file, self.location, self.field, self.message) if part)


class InputError(Exception):
    """Invalid input, raised before any rendering; `issues` holds every problem found."""

    def __init__(self, issues: Iterable[InputIssue]):
        self.issues = list(issues)
        if not self.issues:
            raise ValueError("InputError needs at least one issue")
        super().__init__("\n".join(str(issue) for issue in self.issues))


class IssueList:
    """The first `limit` issues, and a count of the rest: memory stays bounded however many rows are bad."""

    def __init__(self, limit: int, file: str):
        self.limit, self.file = limit, file
        self.items: list[InputIssue] = []
        self.omitted = 0

    def add(self, issue: InputIssue) -> None:
        if len(self.items) < self.limit:
            self.items.append(issue)
        else:
            self.omitted += 1

    def extend(self, issues: Iterable[InputIssue]) -> None:
        for issue in issues:
            self.add(issue)

    def listed(self) -> list[InputIssue]:
        """The issues kept, and one line that counts those left out."""
        if not self.omitted:
            return list(self.items)
        return self.items + [InputIssue(self.file, "", "", f"... and {self.omitted} more error(s) not listed "
                                        f"(the first {self.limit} are above)")]


def issues_from_validation(
    error: ValidationError, model: type[BaseModel], file: str, location: str, whole: str = ""
) -> list[InputIssue]:
    """Pydantic errors of `model` -> issues with dotted field paths.

    whole: the field named by errors of the model as a whole (a cross-field rule of
    the top-level model has an empty location).
    """
    issues = []
    for err in error.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"]) or whole
        kind, message = err["type"], err["msg"]
        if kind == "extra_forbidden":
            names = _field_names(model, err["loc"][:-1])
            message = f"unknown field (expected one of: {', '.join(names)})" if names else "unknown field"
        elif kind == "missing":
            message = "required"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        issues.append(InputIssue(file, location, field, message))
    return issues


def _field_names(model: type[BaseModel], path: tuple) -> list[str]:
    """Field names of the (nested) model at `path`, or [] when the path leaves the models."""
    for part in path:
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return sorted(model.model_fields)
