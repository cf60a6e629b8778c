from tests.support import scalar
from vidretry import db


async def test_schema_is_current(db_url: str) -> None:
    async with await db.connect(db_url) as conn:
        assert await db.schema_version(conn) == db.latest_version()
        assert await scalar(conn, "SELECT count(*) FROM video_assets") == 0
