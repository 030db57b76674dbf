# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_virtio_migrate_global_optspecs
    string join \n c/connect= json v/verbose q/quiet color= h/help V/version
end

function __fish_virtio_migrate_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_virtio_migrate_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_virtio_migrate_using_subcommand
    set -l cmd (__fish_virtio_migrate_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c virtio-migrate -n "__fish_virtio_migrate_needs_command" -s c -l connect -d 'libvirt connection URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system); scan takes it several times (one report for several hosts). On a remote URI (qemu+ssh://…) disk images are read through libvirt\'s volume download, which needs a read-write connection (opened for those reads only) and the images in a storage pool of that host' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_needs_command" -l color -d 'When to colour the output (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c virtio-migrate -n "__fish_virtio_migrate_needs_command" -l json -d 'Print one JSON document instead of the human report'
complete -c virtio-migrate -n "__fish_virtio_migrate_needs_command" -s v -l verbose -d 'More detail on stderr'
complete -c virtio-migrate -n "__fish_virtio_migrate_needs_command" -s q -l quiet -d 'Only errors on stderr'
complete -c virtio-migrate -n "__fish_virtio_migrate_needs_command" -s h -l help -d 'Print help'
complete -c virtio-migrate -n "__fish_virtio_migrate_needs_command" -s V -l version -d 'Print version'
complete -c virtio-migrate -n "__fish_virtio_migrate_needs_command" -f -a "scan" -d 'List every domain and find the Windows guests still on IDE/SATA disks or emulated NICs'
complete -c virtio-migrate -n "__fish_virtio_migrate_needs_command" -f -a "inspect" -d 'Show what a disk image holds and whether its Windows can boot from virtio: layers, partitions, NTFS volumes, the Windows root, every driver check and the hazards'
complete -c virtio-migrate -n "__fish_virtio_migrate_needs_command" -f -a "convert" -d 'Switch one domain to virtio: plan, back up, shut down, define, cold start, verify, roll back on failure; with --dry-run show the plan and the diff only'
complete -c virtio-migrate -n "__fish_virtio_migrate_needs_command" -f -a "rollback" -d 'Restore a backed-up domain definition, or list the backups'
complete -c virtio-migrate -n "__fish_virtio_migrate_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand scan" -l parallel -d 'Inspect at most N disk images at a time' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand scan" -l hosts -d 'Also scan the hosts listed in FILE: one libvirt URI a line, `#` starts a comment' -r -F
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand scan" -l read-limit -d 'Stop reading one guest\'s disk images after SIZE bytes (suffix K, M or G: KiB, MiB, GiB); that guest\'s verdict is then unknown (budget exceeded)' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand scan" -l time-limit -d 'Stop inspecting one guest after SECONDS of wall time; that guest\'s verdict is then unknown (budget exceeded)' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand scan" -s c -l connect -d 'libvirt connection URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system); scan takes it several times (one report for several hosts). On a remote URI (qemu+ssh://…) disk images are read through libvirt\'s volume download, which needs a read-write connection (opened for those reads only) and the images in a storage pool of that host' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand scan" -l color -d 'When to colour the output (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand scan" -l details -d 'Under the table, list each domain\'s UUID, every disk and NIC, every Windows hint and the management layer\'s evidence'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand scan" -l no-inspect -d 'Do not read the candidates\' disk images (no verdict columns: inventory only)'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand scan" -l json -d 'Print one JSON document instead of the human report'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand scan" -s v -l verbose -d 'More detail on stderr'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand scan" -s q -l quiet -d 'Only errors on stderr'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand scan" -s h -l help -d 'Print help'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand inspect" -l domain -d 'Inspect the boot disk (and the other disks) of this libvirt domain: name, UUID or id; formats and machine type come from its persistent definition' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand inspect" -l format -d 'Read PATH as this format instead of probing it' -r -f -a "raw\t''
qcow2\t''"
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand inspect" -l machine -d 'Machine type the guest runs on, for PATH (decides which virtio PCI ids Windows will see); without it both the legacy and the modern ids must be bound' -r -f -a "pc\t'i440fx (`pc`, `pc-i440fx-*`): legacy virtio ids'
q35\t'q35 (`pc-q35-*`): modern virtio ids'"
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand inspect" -l read-limit -d 'Stop reading one guest\'s disk images after SIZE bytes (suffix K, M or G: KiB, MiB, GiB); that guest\'s verdict is then unknown (budget exceeded)' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand inspect" -l time-limit -d 'Stop inspecting one guest after SECONDS of wall time; that guest\'s verdict is then unknown (budget exceeded)' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand inspect" -s c -l connect -d 'libvirt connection URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system); scan takes it several times (one report for several hosts). On a remote URI (qemu+ssh://…) disk images are read through libvirt\'s volume download, which needs a read-write connection (opened for those reads only) and the images in a storage pool of that host' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand inspect" -l color -d 'When to colour the output (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand inspect" -l stats -d 'Show bytes read and read calls per host file, and the wall time'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand inspect" -l json -d 'Print one JSON document instead of the human report'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand inspect" -s v -l verbose -d 'More detail on stderr'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand inspect" -s q -l quiet -d 'Only errors on stderr'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -s d -l domain -d 'The domain: name, UUID or id' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l only -d 'With --all: only these domains (name, UUID or id; repeatable), those of them that are candidates, as one batch' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l parallel -d 'With --all: convert at most N domains at a time (default: one after another)' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l bus -d 'Bus for the hard disks: virtio (virtio-blk, vdX) or scsi (virtio-scsi, sdX)' -r -f -a "virtio\t'virtio-blk (`vdX`), driver viostor'
scsi\t'virtio-scsi (`sdX` on a virtio-scsi controller), driver vioscsi'"
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l disks -d 'Which hard disks move: all of them or only the boot disk' -r -f -a "all\t'The boot disk and every other hard disk on a converted bus'
boot\t'Only the boot disk'"
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l nics -d 'Emulated NICs to virtio: when netkvm is ready (auto), always, or never' -r -f -a "auto\t'When the guest\'s netkvm driver is ready'
always\t'Even when netkvm is not ready or not checked'
never\t'Never'"
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -s o -l output -d 'Write the planned definition to FILE (for the change ticket)' -r -F
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l shutdown-mode -d 'How to ask the guest to shut down: the guest agent then ACPI (auto), or only one' -r -f -a "auto\t'The guest agent when it answers, else the ACPI power button'
acpi\t'The ACPI power button only'
agent\t'The guest agent only'"
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l shutdown-timeout -d 'Seconds to wait for the guest to power off (the request is re-sent every 10 s)' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l verify-time -d 'Seconds the started guest must stay running (and its agent answer) before success' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l state-dir -d 'State directory (locks, backups, journals)' -r -F
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l read-limit -d 'Stop reading one guest\'s disk images after SIZE bytes (suffix K, M or G: KiB, MiB, GiB); that guest\'s verdict is then unknown (budget exceeded)' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l time-limit -d 'Stop inspecting one guest after SECONDS of wall time; that guest\'s verdict is then unknown (budget exceeded)' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -s c -l connect -d 'libvirt connection URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system); scan takes it several times (one report for several hosts). On a remote URI (qemu+ssh://…) disk images are read through libvirt\'s volume download, which needs a read-write connection (opened for those reads only) and the images in a storage pool of that host' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l color -d 'When to colour the output (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l all -d 'Every conversion candidate of the host (scan\'s list) whose plan is ready; a table of results at the end. Exit 0 all converted or nothing to do, 3 some blocked and none failed, 1 any failed or rolled back, 130 interrupted'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l dry-run -d 'Show the plan and the diff of the definition; change nothing'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l no-inspect -d 'Plan without reading the guest\'s disk image: the drivers count as not checked (a blocker unless --force)'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l include-sata -d 'Also move hard disks on SATA (IDE ones always move)'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l force -d 'Override the blockers that may be overridden (drivers not checked, managed domain)'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -s y -l yes -d 'Do not ask for confirmation (required when there is no terminal)'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l force-off -d 'Destroy (power off) the guest when it has not shut down within the timeout'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l no-start -d 'Define the new definition but do not start the domain'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l no-verify -d 'Do not watch the started guest (risky: a guest that fails to boot is not rolled back)'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l resume -d 'Finish an interrupted conversion of the domain (from its journal and backup) instead of planning'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -l json -d 'Print one JSON document instead of the human report'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -s v -l verbose -d 'More detail on stderr'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -s q -l quiet -d 'Only errors on stderr'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand convert" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -l domain -d 'The domain (name, UUID or id)' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -l backup -d 'The backup id to restore (default: the unfinished run\'s, else the latest taken before a convert)' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -l shutdown-mode -d 'How to ask the guest to shut down: the guest agent then ACPI (auto), or only one' -r -f -a "auto\t'The guest agent when it answers, else the ACPI power button'
acpi\t'The ACPI power button only'
agent\t'The guest agent only'"
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -l shutdown-timeout -d 'Seconds to wait for the guest to power off (the request is re-sent every 10 s)' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -l state-dir -d 'State directory (locks, backups, journals)' -r -F
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -s c -l connect -d 'libvirt connection URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system); scan takes it several times (one report for several hosts). On a remote URI (qemu+ssh://…) disk images are read through libvirt\'s volume download, which needs a read-write connection (opened for those reads only) and the images in a storage pool of that host' -r
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -l color -d 'When to colour the output (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -l list -d 'List the backups (of --domain, or of all domains) instead of restoring'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -s y -l yes -d 'Do not ask for confirmation (required when there is no terminal)'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -l force-off -d 'Destroy (power off) the guest when it has not shut down within the timeout'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -l no-start -d 'Do not start the domain after restoring'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -l json -d 'Print one JSON document instead of the human report'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -s v -l verbose -d 'More detail on stderr'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -s q -l quiet -d 'Only errors on stderr'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand rollback" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand help; and not __fish_seen_subcommand_from scan inspect convert rollback help" -f -a "scan" -d 'List every domain and find the Windows guests still on IDE/SATA disks or emulated NICs'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand help; and not __fish_seen_subcommand_from scan inspect convert rollback help" -f -a "inspect" -d 'Show what a disk image holds and whether its Windows can boot from virtio: layers, partitions, NTFS volumes, the Windows root, every driver check and the hazards'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand help; and not __fish_seen_subcommand_from scan inspect convert rollback help" -f -a "convert" -d 'Switch one domain to virtio: plan, back up, shut down, define, cold start, verify, roll back on failure; with --dry-run show the plan and the diff only'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand help; and not __fish_seen_subcommand_from scan inspect convert rollback help" -f -a "rollback" -d 'Restore a backed-up domain definition, or list the backups'
complete -c virtio-migrate -n "__fish_virtio_migrate_using_subcommand help; and not __fish_seen_subcommand_from scan inspect convert rollback help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
