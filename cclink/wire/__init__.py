"""The formats cclink reads and writes, one file each (docs/wire.md describes every byte).

- z32.py: z-base-32
- strictjson.py: JSON read as strictly as serde_json (no repeated keys, NaN or lone surrogates)
- keys.py: Ed25519 identities and public keys, and their X25519 (age) forms
- agecrypt.py: age encryption to raw X25519 keys, and the age header's size
- kdf.py: Argon2id + HKDF for PINs and passphrases; the PIN and passphrase rules
- envelope.py: the CCLINKEK passphrase envelope
- keyfile.py: the key file (hex or CCLINKEK)
- payload.py: the encrypted payload (session id, hostname, project, carry details)
- record.py: the signed handoff record and its canonical JSON
- packet.py: the DNS message and the pkarr SignedPacket
- archive.py: a session as one zstd-compressed tar stream, unpacked within bounds, and the cwd rewrite

A wire module imports only other wire modules, local/ and errors.
"""
