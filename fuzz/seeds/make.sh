#!/bin/sh
# Rebuild the registry seeds and the fixed dirty primary of the fuzz targets. Needs python3 and
# hivexregedit (libwin-hivex-perl). Uses the fixture tools of fixtures/hives.
#   system.hive                 a small SYSTEM-shaped hive (the keys the verdict reads)
#   system-dirty.hive           the same hive made dirty (its changes live in its LOG1 only)
#   system-dirty.hive.LOG1      a new-format (HvLE) log carrying one change
#   system-dirty-old.hive(.LOG1) the same change as an old-format (DIRT) log
set -eu
here=$(cd "$(dirname "$0")" && pwd)
hives=$here/../../fixtures/hives
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
python3 "$here/system_reg.py" base > base.reg
python3 "$here/system_reg.py" change > change.reg
python3 "$hives/reader/minimal_hive.py" system.hive
hivexregedit --merge system.hive base.reg
cp system.hive changed.hive
hivexregedit --merge changed.hive change.reg
python3 "$hives/make-dirty.py" new system-dirty.hive system.hive changed.hive system-dirty.hive.LOG1
python3 "$hives/make-dirty.py" old system-dirty-old.hive system-dirty-old.hive.LOG1 system.hive changed.hive
cp system.hive system-dirty.hive system-dirty.hive.LOG1 system-dirty-old.hive \
    system-dirty-old.hive.LOG1 "$here/"
ls -l "$here"
