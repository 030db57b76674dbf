# The state directory (locks, definition backups, journals) is root's alone: the backups are read
# with VIR_DOMAIN_XML_SECURE and may hold VNC/SPICE passwords. Made here because
# cargo-generate-rpm 0.21.1 cannot package an empty directory (its `dir = true` assets fail to
# build); an existing directory is left as the administrator set it, and rpm -e leaves it.
if [ ! -d /var/lib/virtio-migrate ]; then
    # -m applies to the last directory only, as meant: /var/lib is the filesystem package's.
    # shellcheck disable=SC2174
    mkdir -p -m 0700 /var/lib/virtio-migrate
fi
