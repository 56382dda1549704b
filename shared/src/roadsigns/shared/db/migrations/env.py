from alembic import context
from sqlalchemy import create_engine

from roadsigns.shared.db.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    raise SystemExit("alembic: no sqlalchemy.url (roadsigns.shared.db.migrate sets it)")
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
