-- Removes the registrations of watchers that stopped renewing them (their process died).
DELETE FROM {schema}.watching WHERE until < now()
