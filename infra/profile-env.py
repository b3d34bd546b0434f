#!/usr/bin/env python3
"""Print a cargo profile of the workspace's Cargo.toml as CARGO_PROFILE_RELEASE_* assignments.

    python3 infra/profile-env.py lambda
    CARGO_PROFILE_RELEASE_OPT_LEVEL=s
    CARGO_PROFILE_RELEASE_LTO=fat
    ...

`sam build` can only build with `cargo lambda build --release`; infra/deploy.sh exports
these lines so that the `release` profile it builds with takes the named profile's settings
(cargo reads CARGO_PROFILE_<name>_<key> over Cargo.toml). Keys the named profile inherits
from `release` are left alone; `inherits` chains other than to `release` are refused.
Needs Python 3.11+ (tomllib).
"""

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def assignments(manifest: dict, profile: str) -> list[str]:
    profiles = manifest.get("profile", {})
    if profile not in profiles:
        raise SystemExit(f"profile-env: Cargo.toml has no [profile.{profile}]")
    settings = dict(profiles[profile])
    parent = settings.pop("inherits", "release")
    if parent != "release":
        raise SystemExit(f"profile-env: [profile.{profile}] inherits {parent!r}, not 'release'")
    lines = []
    for key, value in settings.items():
        if isinstance(value, dict):
            raise SystemExit(f"profile-env: [profile.{profile}] {key} is a table; not expressible as one variable")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        lines.append(f"CARGO_PROFILE_RELEASE_{key.upper().replace('-', '_')}={text}")
    return lines


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: profile-env.py <profile>")
    with open(ROOT / "Cargo.toml", "rb") as f:
        manifest = tomllib.load(f)
    print("\n".join(assignments(manifest, sys.argv[1])))


if __name__ == "__main__":
    main()
