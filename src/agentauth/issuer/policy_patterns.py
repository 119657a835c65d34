"""Resource patterns of policies (issue 5; issue 12: matching without backtracking): ``*`` is exactly one
segment, ``**`` any number of segments (none included), a ``*`` inside a segment any characters but ``/``.
Compiled once per pattern (``compile_pattern``), bounded when written (``check_pattern_limits``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from agentauth.errors import InvalidRequest

MAX_RESOURCE_LENGTH = 1000


def segments(resource: str) -> list[str]:
    """A resource path split into segments; leading/trailing slashes are insignificant."""
    if not isinstance(resource, str) or not resource.strip("/") or len(resource) > MAX_RESOURCE_LENGTH:
        raise InvalidRequest(f"resource must be a non-empty path of at most {MAX_RESOURCE_LENGTH} characters")
    parts = resource.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidRequest("resource must not contain empty, '.' or '..' segments")
    return parts


# Write-time bounds on what a pattern may ask of the matcher (see ``Glob``): with them, one match costs at most
# a few passes over the resource, whatever the pattern.
MAX_FLOATING_SEGMENTS: Final = 4
MAX_INFIX_LENGTH: Final = 32


def _segment_regex(part: str) -> str:
    """One pattern segment as a regex that never backtracks: it either consumes exactly one resource segment or
    fails, in time linear in that segment (each ``*`` commits to the leftmost place its following literal fits,
    which is optimal: it leaves the most room to what follows)."""
    if part == "*":
        return "[^/]++"
    chunks = part.split("*")
    if len(chunks) == 1:
        return re.escape(part)
    regex = re.escape(chunks[0])
    for infix in chunks[1:-1]:
        if infix:
            regex += f"(?>[^/]*?{re.escape(infix)})"
    suffix = chunks[-1]
    if not suffix:
        return regex + "[^/]*+"
    # The rest of the segment, which must end with the suffix and leave room for it after what came before.
    return regex + f"(?=[^/]{{{len(suffix)}}})[^/]*+(?<={re.escape(suffix)})"


def _run_regex(run: Sequence[str]) -> str:
    return "/".join(_segment_regex(part) for part in run)


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled resource pattern, matched without backtracking (issue 12: a pattern such as ``*a*a*a*a*b``
    once took seconds against 140 characters).

    A pattern is runs of segments separated by ``**``: ``head/**/f1/**/f2/**/tail``. The head must match the
    first segments and the tail the last ones (their places are fixed); each *floating* run between two ``**``
    is placed at its leftmost fit after the previous one, which is optimal for the same reason as in a segment.
    Each run is one regex in which nothing backtracks (``_segment_regex``), so a match costs O(resource) for the
    head, the tail and a pattern without ``**``, and O(resource x floating run) for the floating runs, which
    ``check_pattern_limits`` bounds when a policy is written."""

    pattern: str
    exact: re.Pattern[str] | None  # the whole pattern when it has no '**'
    head: re.Pattern[str] | None
    floating: tuple[re.Pattern[str], ...]
    tail: re.Pattern[str] | None
    tail_size: int

    def match(self, path: str) -> bool:
        """Whether ``path`` (segments joined by ``/``, no leading or trailing slash) matches."""
        if self.exact is not None:
            return self.exact.fullmatch(path) is not None
        head_end = -1  # index of the '/' after the head (or the path's end); -1 when there is no head
        if self.head is not None:
            found = self.head.match(path)
            if found is None:
                return False
            head_end = found.end()
        end = len(path)
        if self.tail is not None:
            cut = end
            for _ in range(self.tail_size):
                if cut < 0:
                    return False  # fewer segments than the tail
                cut = path.rfind("/", 0, cut)
            if cut < head_end or self.tail.fullmatch(path, cut + 1) is None:
                return False  # no tail there, or it would overlap the head
            end = cut  # the '/' before the tail (-1: the tail is the whole path)
        if not self.floating:
            return True
        # Each floating run is searched as "/seg/seg" in "/" + path (indexes shift by one): the search only
        # tries places after a '/', and the literal first character lets the regex engine skip to them.
        text, pos = "/" + path, head_end + 1
        for run in self.floating:
            found = run.search(text, pos, end + 1)
            if found is None:
                return False
            pos = found.end()
        return True


def _pattern_runs(pattern: str) -> list[list[str]]:
    parts = segments(pattern)
    runs: list[list[str]] = [[]]
    for part in parts:
        if part == "**":
            runs.append([])
        elif "**" in part:
            raise InvalidRequest(f"pattern {pattern!r}: '**' must be a whole segment")
        else:
            runs[-1].append(part)
    return runs


def compile_pattern(pattern: str) -> Glob:
    """``*`` as a whole segment matches exactly one segment, ``**`` any number (including none); a ``*`` inside
    a segment matches any characters but ``/``; anything else is literal."""
    runs = _pattern_runs(pattern)
    if len(runs) == 1:
        return Glob(pattern, re.compile(_run_regex(runs[0])), None, (), None, 0)
    head, *floating, tail = runs
    return Glob(
        pattern,
        None,
        re.compile(_run_regex(head) + "(?![^/])") if head else None,
        tuple(re.compile("/" + _run_regex(run) + "(?![^/])") for run in floating if run),
        re.compile(_run_regex(tail)) if tail else None,
        len(tail),
    )


def check_pattern_limits(pattern: str) -> None:
    """The bounds a new pattern must respect, so that no match can hold the event loop (400 otherwise): a match
    then costs at most about (resource length) x (``MAX_FLOATING_SEGMENTS`` + ``MAX_INFIX_LENGTH``) steps of
    the regex engine."""
    runs = _pattern_runs(pattern)
    for i, run in enumerate(runs):
        infixes = [len(infix) for part in run for infix in part.split("*")[1:-1]]
        if any(n > MAX_INFIX_LENGTH for n in infixes):
            raise InvalidRequest(
                f"pattern {pattern!r}: a literal between two '*' in a segment is at most {MAX_INFIX_LENGTH} characters"
            )
        if 0 < i < len(runs) - 1:  # a floating run, searched for
            if len(run) > MAX_FLOATING_SEGMENTS:
                raise InvalidRequest(
                    f"pattern {pattern!r}: at most {MAX_FLOATING_SEGMENTS} segments may stand between two '**'"
                )
            if sum(infixes) > MAX_INFIX_LENGTH:
                raise InvalidRequest(
                    f"pattern {pattern!r}: between two '**', the literals between two '*' in a segment total at "
                    f"most {MAX_INFIX_LENGTH} characters"
                )
