"""The capability sandbox: what a plugin asks for, what the application grants, how it is enforced.

Owns: the manifest (``manifest``), the capability definitions (``capability``: the public
class applications also use, and the registry of kinds; ``capabilities``: the built-in ones
and the loops over every kind; ``filesystem``: the directory kinds), grants and the
effective sandbox of one plugin, both keyed by capability kind (``grants``), remembered
grant decisions (``grantstore``), limits and the restart policy (``limits``), guest
stdout/stderr (``stdio``; ``stdiopipe``: the pipes and the thread that drains them) and
the outbound HTTP capability with its Spin-syntax allow-list (``http``, ``urlpattern``),
and the OS-level confinement of a worker process (``confinement``: the mode and the
report; ``seccomp``: the system-call filter; ``landlock``: the filesystem ruleset).

May import: ``wasmplug._bridge`` and the leaf modules (``_errors``, ``_fsutil``, ``_jsonstore``,
``_semver``).
"""
