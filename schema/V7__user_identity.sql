-- Who a user is to the identity provider: the issuer (`iss`) and subject (`sub`) of the
-- access tokens that act as them. A user registered through POST /users has both; users from
-- before sign-in existed have neither until an admin links them (`api users link`). One
-- user per issuer and subject.
ALTER TABLE users
    ADD COLUMN issuer  TEXT CHECK (char_length(issuer) BETWEEN 1 AND 2048),
    ADD COLUMN subject TEXT CHECK (char_length(subject) BETWEEN 1 AND 255),
    ADD CONSTRAINT users_identity_whole CHECK ((issuer IS NULL) = (subject IS NULL));

CREATE UNIQUE INDEX users_identity_key ON users (issuer, subject) WHERE issuer IS NOT NULL;
