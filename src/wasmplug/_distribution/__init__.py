"""Distribution of signed plugins through OCI registries.

Owns: OCI references (:mod:`.reference`), the CNCF TAG-Runtime Wasm OCI
artifact layout (:mod:`.artifact`), an OCI distribution-API client over httpx
with retries, resume, size caps and deadlines (:mod:`.client`), the Basic and
Bearer-token auth it answers challenges with (:mod:`.auth`), registry credentials
(:mod:`.credentials`), the blob cache by digest (:mod:`.cache`), package-name to
registry mapping and ``.well-known/wasm-pkg`` discovery (:mod:`.names`), the
``wasmplug.lock`` file (:mod:`.lockfile`), and the operations that tie them to
the plugin registry: push, pull, install, lock, sync (:mod:`.operations`).

May import: ``wasmplug._trust`` (the plugin registry, component info, the trust
store), ``wasmplug._sandbox.manifest`` and the leaf modules (``_errors``,
``_fsutil``, ``_semver``). Imported by ``wasmplug._runtime`` (``PluginHost.install``
of a reference) and ``wasmplug._cli``. Nothing here decides trust: every artifact
pulled goes through the same verification as a file install.
"""
