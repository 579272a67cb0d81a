"""The pages' dev login ``make run`` creates: user ``admin`` (role admin), its password kept in
.data/admin_password and printed in the banner."""

from __future__ import annotations

from rules.access import Role
from store import access
from store.db import make_engine, make_sessionmaker

DEV_ADMIN = "admin"


async def ensure_dev_admin(database_url: str, password: str) -> bool:
    """Created once: a store where the user exists (maybe with a changed password) is left alone."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            if any(user.username == DEV_ADMIN for user in await access.list_users(session)):
                return False
            await access.put_user(session, DEV_ADMIN, password, Role.admin)
    finally:
        await engine.dispose()
    return True
