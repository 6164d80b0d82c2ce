-- Users own products. Usernames and e-mail addresses are unique regardless of case, so
-- "Alice" and "alice" cannot both register.
CREATE TABLE users (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username    TEXT        NOT NULL CHECK (char_length(username) BETWEEN 1 AND 64),
    email       TEXT        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
