"""The store ``[storage]`` describes, for the app to hand to the worker, the notifier and the
command line, with the copying of generators' URLs ``[generator_urls]`` allows. The
object-store client is loaded only for an ``s3://`` url, the HTTP client only for a URL to
copy."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

from vidretry.config import Config
from vidretry.results.base import MIB, ResultStore
from vidretry.results.files import FileStore, path_of
from vidretry.results.keeping import Results

# host, port -> addresses (vidretry.results.urls.Resolver, without importing the HTTP client)
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


def configured(config: Config, *, resolver: Resolver | None = None) -> Results:
    """``resolver``: how a generator's URL's host is resolved (the system's by default)."""
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
    urls = config.generator_urls

    async def copy(url: str) -> AsyncGenerator[bytes]:
        from vidretry.results.urls import UrlCopier, system_resolver

        copier = UrlCopier(urls, resolver=resolver or system_resolver)
        async for chunk in copier.chunks(url):
            yield chunk

    return Results(
        store,
        scratch=config.worker.output_dir,
        fetch=copy,
        limit=storage.max_video_mib * MIB,
    )
