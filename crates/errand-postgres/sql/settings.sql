-- The server settings that decide whether a commit survives a crash, as this session sees
-- them (a database or role can override the server's).
SELECT name, setting FROM pg_settings
WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')
ORDER BY name
