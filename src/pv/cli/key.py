"""Make or replace this host's key for signing gate reports.

`pv key generate` makes the host's Ed25519 key: the private key in the key
folder (--key-dir, else $PV_KEY_DIR, else $XDG_CONFIG_HOME/pv or ~/.config/pv;
never inside a repository; mode 0600), its public key beside it. Every gate
report this host writes from then on is signed with it. With --publish DIR
the public key is also written into DIR (a project's trusted keys, keys/).

`pv key rotate` replaces the key by a new one: the old private key is
deleted, its public key kept under retired/ of the key folder; with
--publish DIR the old public key is removed from DIR and the new one added.

`pv key show` prints the key's id and public key.

Exit status: 0 done, 2 bad input (a key exists already, none to rotate, a
key folder inside a repository, an unreadable key).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("generate", "rotate", "show"), help="what to do")
    parser.add_argument("--key-dir", metavar="DIR", type=Path, default=None,
                        help="the folder of this host's key (default: $PV_KEY_DIR, else ~/.config/pv)")
    parser.add_argument("--publish", metavar="DIR", type=Path, default=None,
                        help="also write the public key into DIR, the folder of a project's trusted keys")


def run(args: argparse.Namespace) -> int:
    from pv.attest.keys import (
        SigningError, generate_key, key_dir, load_host_key, public_pem, publish, rotate_key,
    )

    folder = key_dir(args.key_dir)
    replaced = None
    if args.action == "generate":
        key = generate_key(folder)
        print(f"generated signing key {key.key_id[:16]}... in {key.path} (mode 0600)")
    elif args.action == "rotate":
        replaced, key = rotate_key(folder)
        print(f"rotated: key {replaced[:16]}... retired, new signing key {key.key_id[:16]}... in {key.path}")
    else:
        found = load_host_key(folder)
        if found is None:
            raise SigningError(f"{folder}: no signing key; `pv key generate` makes one")
        key = found
    if args.publish is not None and args.action != "show":
        print(f"trusted public key written to {publish(key, args.publish, replaced)}")
    print(f"key id: {key.key_id}")
    print(public_pem(key.private.public_key()), end="")
    if args.publish is None and args.action != "show":
        print("to trust it, copy the public key above into the project's trusted keys (keys/*.pub)")
    return 0
