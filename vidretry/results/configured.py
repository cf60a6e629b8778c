"""The store ``[storage]`` describes, for the app to hand to the worker, the notifier and the
command line. The object-store client is loaded only when it is needed: an ``s3://`` url, or
a generator's URL to copy."""

from __future__ import annotations

from collections.abc import AsyncIterator

from vidretry.config import Config
from vidretry.results.base import MIB, ResultStore
from vidretry.results.files import FileStore, path_of
from vidretry.results.keeping import Results


def configured(config: Config) -> Results:
    storage = config.storage
    store: ResultStore
    if storage.url is not None and storage.scheme == "s3":
        from vidretry.results.remote import S3ResultStore, S3Settings

        store = S3ResultStore(
            S3Settings(
                bucket=storage.bucket,
                prefix=storage.prefix,
                bucket_url=storage.bucket_url,
                region=storage.region or "us-east-1",
                access_key_id=storage.access_key_id,
                secret_access_key=storage.secret_access_key,
            )
        )
    else:
        directory = path_of(storage.url) if storage.url else config.worker.output_dir
        store = FileStore(directory)
    return Results(
        store,
        scratch=config.worker.output_dir,
        fetch=_url_chunks,
        limit=storage.max_video_mib * MIB,
    )


async def _url_chunks(url: str) -> AsyncIterator[bytes]:
    from vidretry.results.remote import url_chunks

    async for chunk in url_chunks(url):
        yield chunk
