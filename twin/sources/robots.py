"""robots.txt rules (RFC 9309): which paths a crawler with our User-Agent may fetch."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class RobotsRules:
    """The allow/disallow rules of one robots.txt group (RFC 9309: longest match wins, allow on ties)."""

    rules: tuple[tuple[bool, str], ...] = ()
    unreachable: str | None = None  # why robots.txt could not be read; then nothing is allowed

    @classmethod
    def parse(cls, text: str, user_agent: str) -> RobotsRules:
        """The rules for our product token (e.g. `twin-crawler`), else those for `*`."""
        token = user_agent.split("/")[0].strip().lower()
        groups: dict[str, list[tuple[bool, str]]] = {}
        agents: list[str] = []
        in_rules = False
        for raw_line in text.splitlines():
            line = raw_line.split("#", 1)[0].strip()
            if ":" not in line:
                continue
            name, value = (part.strip() for part in line.split(":", 1))
            name = name.lower()
            if name == "user-agent":
                if in_rules:  # a user-agent line after rules opens a new group
                    agents, in_rules = [], False
                agents.append(value.lower())
                for agent in agents:
                    groups.setdefault(agent, [])
            elif name in ("allow", "disallow"):
                in_rules = True
                if value:  # an empty Disallow allows everything
                    for agent in agents:
                        groups.setdefault(agent, []).append((name == "allow", value))
        chosen = groups.get(token, groups.get("*", []))
        return cls(rules=tuple(chosen))

    def allows(self, url: str) -> bool:
        if self.unreachable is not None:
            return False
        parts = urlsplit(url)
        path = unquote(parts.path or "/") + (f"?{unquote(parts.query)}" if parts.query else "")
        if path == "/robots.txt":
            return True
        best_length, allowed = -1, True
        for allow, pattern in self.rules:
            if _robots_match(unquote(pattern), path):
                length = len(pattern)
                if length > best_length or (length == best_length and allow):
                    best_length, allowed = length, allow
        return allowed


def _robots_match(pattern: str, path: str) -> bool:
    anchored = pattern.endswith("$")
    body = pattern[:-1] if anchored else pattern
    regex = ".*".join(re.escape(piece) for piece in body.split("*")) + ("$" if anchored else "")
    return re.match(regex, path) is not None
