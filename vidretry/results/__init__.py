"""Where finished videos are kept, so that workers and notifiers need no shared disk.

A worker puts a generator's video into the store after success (``Results.keep``: a local
file, or a copy of the generator's https URL, streamed, hashed, within Telegram's size
limit) and records the result as a URI with its size and SHA-256; the leading notifier reads
it back as a stream into Telegram's upload (``Results.open``), checking both.

``base`` holds the interface (``ResultStore``) and the records; ``keeping`` what the
worker and the notifier call (``Results``: keep a video, open it, delete it); ``files`` the
directory store (``file://``, the default: ``[worker] output_dir``); ``remote`` the
S3-compatible store — the only module that imports the object-store client
(obstore); ``listing`` the bucket's own answer to a signed listing, with which ``vidretry
doctor`` proves where objects go; ``urls`` the copying of a generator's URL, within what
``[generator_urls]`` allows — the only one that imports an HTTP client (httpcore). The app
wires the configured store in (``configured``); the queue and the notifier see only the
interface. A store reads and deletes only its own: a file inside its directory, an object
under its prefix.

May import: the shared vocabulary. Never ``db``, ``queue`` or an adapter package.
"""
