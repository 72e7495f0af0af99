-- 002_model: the data model of the platform (users, labs, studies, children,
-- demographics, responses, consent, feedback, videos, study logs) and the one
-- permission check every researcher-facing query goes through.
--
-- Conventions: bigserial ids stay internal; the uuid column is the public id
-- (JSON:API "id").  Timestamps are timestamptz.  Text fields that upstream
-- keeps as blank-able CharFields are NOT NULL DEFAULT '' so the API never has
-- to tell NULL from "".  date_modified is kept by a trigger so concurrent
-- writers cannot forget it.

-- Keeps date_modified honest on every UPDATE (responses are PATCHed many
-- times per session; the nested list orders by it).
CREATE FUNCTION touch_date_modified() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.date_modified := now();
    RETURN NEW;
END;
$$;

-- Timestamps as the API renders them: ISO 8601 in UTC with microseconds
-- and "Z", as DRF does with USE_TZ and UTC; independent of the session's
-- TimeZone and DateStyle.
CREATE FUNCTION api_time(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- ---------------------------------------------------------------- users
CREATE TABLE users (
    id                        bigserial PRIMARY KEY,
    uuid                      uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    email                     text NOT NULL CHECK (email <> ''),
    -- argon2id PHC string ($argon2id$v=19$m=..,t=..,p=..$salt$hash);
    -- '' means "no password login" (token-only accounts).
    password_hash             text NOT NULL DEFAULT '',
    given_name                text NOT NULL DEFAULT '',
    middle_name               text NOT NULL DEFAULT '',
    family_name               text NOT NULL DEFAULT '',
    nickname                  text NOT NULL DEFAULT '',
    identicon                 text NOT NULL DEFAULT '',
    time_zone                 text NOT NULL DEFAULT 'America/New_York',
    locale                    text NOT NULL DEFAULT 'en-us',
    is_active                 boolean NOT NULL DEFAULT true,
    is_researcher             boolean NOT NULL DEFAULT false,
    -- Member of the site admins (platform reviewers).  Issue 5 turns this
    -- into a site group; code must ask has_study_perm, never this column.
    is_site_admin             boolean NOT NULL DEFAULT false,
    former_lookit_id          text NOT NULL DEFAULT '',
    linked_former_lookit_ids  text[] NOT NULL DEFAULT '{}',
    email_next_session        boolean NOT NULL DEFAULT true,
    email_new_studies         boolean NOT NULL DEFAULT true,
    email_study_updates       boolean NOT NULL DEFAULT true,
    email_response_questions  boolean NOT NULL DEFAULT true,
    date_created              timestamptz NOT NULL DEFAULT now(),
    last_login                timestamptz
);
-- Emails are case-insensitive identities (citext is not available).
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TABLE api_tokens (
    id            bigserial PRIMARY KEY,
    -- hex SHA-256 of the key; the key itself is shown once and never stored
    token_hash    text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    user_id       bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

-- BasicUserSerializer's attributes (username is added by the code for
-- holders of can_read_usernames).  is_staff is the site-admin flag.
CREATE VIEW users_api AS
SELECT u.id, u.uuid, u.email,
       json_build_object(
           'given_name', u.given_name,
           'middle_name', u.middle_name,
           'family_name', u.family_name,
           'nickname', u.nickname,
           'identicon', u.identicon,
           'is_active', u.is_active,
           'is_staff', u.is_site_admin,
           'is_researcher', u.is_researcher,
           'former_lookit_id', u.former_lookit_id,
           'linked_former_lookit_ids', to_json(u.linked_former_lookit_ids),
           'email_next_session', u.email_next_session,
           'email_new_studies', u.email_new_studies,
           'email_study_updates', u.email_study_updates,
           'email_response_questions', u.email_response_questions,
           'date_created', api_time(u.date_created),
           'pk', u.id) AS attrs
FROM users u;

-- ---------------------------------------------------------------- labs
CREATE TABLE labs (
    id                           bigserial PRIMARY KEY,
    uuid                         uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    name                         text NOT NULL UNIQUE CHECK (name <> ''),
    slug                         text NOT NULL DEFAULT '',
    institution                  text NOT NULL DEFAULT '',
    principal_investigator_name  text NOT NULL DEFAULT '',
    contact_email                text NOT NULL DEFAULT '',
    contact_phone                text NOT NULL DEFAULT '',
    lab_website                  text NOT NULL DEFAULT '',
    description                  text NOT NULL DEFAULT '',
    irb_contact_info             text NOT NULL DEFAULT '',
    approved_to_test             boolean NOT NULL DEFAULT false,
    date_created                 timestamptz NOT NULL DEFAULT now()
);
-- Slugs are optional but unique when given.
CREATE UNIQUE INDEX labs_slug_key ON labs (slug) WHERE slug <> '';
-- GET /api/v1/labs/ lists approved labs by id.
CREATE INDEX labs_approved_idx ON labs (id) WHERE approved_to_test;

-- LabSerializer's attributes.
CREATE VIEW labs_api AS
SELECT l.id, l.uuid, l.approved_to_test,
       json_build_object(
           'name', l.name,
           'institution', l.institution,
           'principal_investigator_name', l.principal_investigator_name,
           'lab_website', l.lab_website,
           'description', l.description,
           'approved_to_test', l.approved_to_test,
           'pk', l.id) AS attrs
FROM labs l;

CREATE TABLE lab_members (
    lab_id      bigint NOT NULL REFERENCES labs(id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('guest', 'readonly', 'member', 'admin')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lab_id, user_id)
);
CREATE INDEX lab_members_user_idx ON lab_members (user_id);

-- A researcher asking to join a lab (upstream requested_researchers).
CREATE TABLE lab_join_requests (
    lab_id      bigint NOT NULL REFERENCES labs(id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lab_id, user_id)
);
CREATE INDEX lab_join_requests_user_idx ON lab_join_requests (user_id);

-- ---------------------------------------------------------------- studies
CREATE TABLE studies (
    id                        bigserial PRIMARY KEY,
    uuid                      uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    -- per-study secret of the hashed child id; a clone gets a new one
    salt                      uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    hash_digits               integer NOT NULL DEFAULT 6 CHECK (hash_digits BETWEEN 1 AND 52),
    name                      text NOT NULL CHECK (name <> ''),
    preview_summary           text NOT NULL DEFAULT '',
    short_description         text NOT NULL DEFAULT '',
    purpose                   text NOT NULL DEFAULT '',
    criteria                  text NOT NULL DEFAULT '',
    duration                  text NOT NULL DEFAULT '',
    contact_info              text NOT NULL DEFAULT '',
    compensation_description  text NOT NULL DEFAULT '',
    min_age_days              integer NOT NULL DEFAULT 0 CHECK (min_age_days >= 0),
    min_age_months            integer NOT NULL DEFAULT 0 CHECK (min_age_months >= 0),
    min_age_years             integer NOT NULL DEFAULT 0 CHECK (min_age_years >= 0),
    max_age_days              integer NOT NULL DEFAULT 0 CHECK (max_age_days >= 0),
    max_age_months            integer NOT NULL DEFAULT 0 CHECK (max_age_months >= 0),
    max_age_years             integer NOT NULL DEFAULT 0 CHECK (max_age_years >= 0),
    criteria_expression       text NOT NULL DEFAULT '',
    image                     text,                       -- URL or NULL
    exit_url                  text NOT NULL DEFAULT '',
    priority                  integer NOT NULL DEFAULT 1 CHECK (priority BETWEEN 1 AND 99),
    comments                  text NOT NULL DEFAULT '',
    structure                 jsonb NOT NULL DEFAULT '{"frames":{},"sequence":[]}',
    generator                 text NOT NULL DEFAULT '',
    use_generator             boolean NOT NULL DEFAULT false,
    display_full_screen       boolean NOT NULL DEFAULT true,
    state                     text NOT NULL DEFAULT 'created' CHECK (state IN
                                  ('created', 'submitted', 'rejected', 'retracted',
                                   'approved', 'active', 'paused', 'deactivated',
                                   'archived')),
    status_change_date        timestamptz,
    public                    boolean NOT NULL DEFAULT false,
    shared_preview            boolean NOT NULL DEFAULT false,
    -- player_repo_url, last_known_player_sha (and legacy addons_* keys)
    metadata                  jsonb NOT NULL DEFAULT '{}',
    built                     boolean NOT NULL DEFAULT false,
    is_building               boolean NOT NULL DEFAULT false,
    lab_id                    bigint NOT NULL REFERENCES labs(id) ON DELETE RESTRICT,
    creator_id                bigint REFERENCES users(id) ON DELETE SET NULL,
    -- 1 Ember Frame Player, 2 External, 3 jsPsych
    study_type                smallint NOT NULL DEFAULT 1 CHECK (study_type IN (1, 2, 3)),
    date_created              timestamptz NOT NULL DEFAULT now(),
    date_modified             timestamptz NOT NULL DEFAULT now(),
    CHECK (jsonb_typeof(structure) = 'object'),
    CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE TRIGGER studies_touch BEFORE UPDATE ON studies
    FOR EACH ROW EXECUTE FUNCTION touch_date_modified();
-- The participant study list: active and public, newest first.
CREATE INDEX studies_active_public_idx ON studies (date_modified DESC, id DESC)
    WHERE state = 'active' AND public;
CREATE INDEX studies_state_idx ON studies (state, date_modified DESC);
CREATE INDEX studies_lab_idx ON studies (lab_id);
CREATE INDEX studies_creator_idx ON studies (creator_id);

-- Eligibility: the child must (not) have taken part in these studies.
CREATE TABLE study_must_have_participated (
    study_id           bigint NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    required_study_id  bigint NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    PRIMARY KEY (study_id, required_study_id)
);
CREATE TABLE study_must_not_have_participated (
    study_id           bigint NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    excluded_study_id  bigint NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    PRIMARY KEY (study_id, excluded_study_id)
);

CREATE TABLE study_members (
    study_id    bigint NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    grp         text NOT NULL CHECK (grp IN ('preview', 'design', 'analysis',
                    'submission_processor', 'researcher', 'manager', 'admin')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (study_id, user_id, grp)
);
CREATE INDEX study_members_user_idx ON study_members (user_id, study_id);

-- ---------------------------------------------------------------- children
CREATE TABLE children (
    id                        bigserial PRIMARY KEY,
    uuid                      uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    user_id                   bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    given_name                text NOT NULL CHECK (given_name <> ''),
    birthday                  date NOT NULL,
    gender                    text NOT NULL CHECK (gender IN ('m', 'f', 'o', 'na')),
    -- weeks: 40 = "40 or more weeks", 23 = "Under 24 weeks", NULL = not sure
    gestational_age_at_birth  smallint CHECK (gestational_age_at_birth BETWEEN 23 AND 40),
    additional_information    text NOT NULL DEFAULT '',
    languages_spoken          text[] NOT NULL DEFAULT '{}',
    existing_conditions       text[] NOT NULL DEFAULT '{}',
    former_lookit_profile_id  text NOT NULL DEFAULT '',
    deleted                   boolean NOT NULL DEFAULT false,   -- soft delete
    date_created              timestamptz NOT NULL DEFAULT now(),
    date_modified             timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER children_touch BEFORE UPDATE ON children
    FOR EACH ROW EXECUTE FUNCTION touch_date_modified();
CREATE INDEX children_user_idx ON children (user_id, id);

-- The display label upstream renders as age_at_birth.
CREATE FUNCTION age_at_birth_label(weeks smallint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN weeks IS NULL THEN 'Not sure or prefer not to answer'
        WHEN weeks >= 40 THEN '40 or more weeks'
        WHEN weeks <= 23 THEN 'Under 24 weeks'
        ELSE weeks::text || ' weeks'
    END
$$;

-- Children as the API renders them (ChildSerializer); both the users and
-- the children endpoints select from it so the attributes cannot drift.
-- attrs is the JSON:API attributes object (json, so key order is kept).
CREATE VIEW children_api AS
SELECT c.id, c.uuid, c.user_id, u.uuid AS user_uuid, c.given_name,
       to_char(c.birthday, 'YYYY-MM-DD') AS birthday, c.gender,
       age_at_birth_label(c.gestational_age_at_birth) AS age_at_birth,
       c.additional_information,
       array_to_string(c.languages_spoken, ' ') AS language_list,
       array_to_string(c.existing_conditions, ' ') AS condition_list,
       c.deleted, c.former_lookit_profile_id, c.birthday AS birthday_date,
       json_build_object(
           'given_name', c.given_name,
           'birthday', to_char(c.birthday, 'YYYY-MM-DD'),
           'gender', c.gender,
           'age_at_birth', age_at_birth_label(c.gestational_age_at_birth),
           'additional_information', c.additional_information,
           'language_list', array_to_string(c.languages_spoken, ' '),
           'condition_list', array_to_string(c.existing_conditions, ' '),
           'deleted', c.deleted,
           'former_lookit_profile_id', c.former_lookit_profile_id,
           'pk', c.id) AS attrs
FROM children c JOIN users u ON u.id = c.user_id;

-- ---------------------------------------------------------------- demographics
-- Versioned: an edit inserts a new row whose previous_id is the old one;
-- the latest row of a user is the one with the greatest (created_at, id).
CREATE TABLE demographic_data (
    id                                         bigserial PRIMARY KEY,
    uuid                                       uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    user_id                                    bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    previous_id                                bigint REFERENCES demographic_data(id) ON DELETE SET NULL,
    number_of_children                         text NOT NULL DEFAULT '',
    child_birthdays                            date[] NOT NULL DEFAULT '{}',
    number_of_guardians                        text NOT NULL DEFAULT '',
    guardians_explanation                      text NOT NULL DEFAULT '',
    us_race_ethnicity_identification           text[] NOT NULL DEFAULT '{}',
    us_race_ethnicity_identification_describe  text NOT NULL DEFAULT '',
    age                                        text NOT NULL DEFAULT '',
    gender                                     text NOT NULL DEFAULT '',
    education_level                            text NOT NULL DEFAULT '',
    annual_income                              text NOT NULL DEFAULT '',
    former_lookit_annual_income                text NOT NULL DEFAULT '',
    lookit_referrer                            text NOT NULL DEFAULT '',
    additional_comments                        text NOT NULL DEFAULT '',
    country                                    text NOT NULL DEFAULT '',
    state                                      text NOT NULL DEFAULT '',
    density                                    text NOT NULL DEFAULT '',
    extra                                      jsonb NOT NULL DEFAULT '{}',
    created_at                                 timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX demographic_data_user_idx ON demographic_data (user_id, created_at DESC, id DESC);
CREATE INDEX demographic_data_previous_idx ON demographic_data (previous_id);

-- DemographicDataSerializer's attributes.
CREATE VIEW demographics_api AS
SELECT d.id, d.uuid, d.user_id, d.created_at,
       json_build_object(
           'number_of_children', d.number_of_children,
           'child_birthdays', to_json(d.child_birthdays),
           'number_of_guardians', d.number_of_guardians,
           'guardians_explanation', d.guardians_explanation,
           'us_race_ethnicity_identification', to_json(d.us_race_ethnicity_identification),
           'us_race_ethnicity_identification_describe', d.us_race_ethnicity_identification_describe,
           'age', d.age,
           'gender', d.gender,
           'education_level', d.education_level,
           'annual_income', d.annual_income,
           'former_lookit_annual_income', d.former_lookit_annual_income,
           'lookit_referrer', d.lookit_referrer,
           'additional_comments', d.additional_comments,
           'country', d.country,
           'state', d.state,
           'density', d.density,
           'extra', d.extra,
           'date_created', api_time(d.created_at),
           'pk', d.id) AS attrs
FROM demographic_data d;

-- ---------------------------------------------------------------- responses
CREATE TABLE responses (
    id                         bigserial PRIMARY KEY,
    uuid                       uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    study_id                   bigint NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    child_id                   bigint NOT NULL REFERENCES children(id) ON DELETE CASCADE,
    completed                  boolean NOT NULL DEFAULT false,
    completed_consent_frame    boolean NOT NULL DEFAULT false,
    survey_consent             boolean NOT NULL DEFAULT false,
    exp_data                   jsonb NOT NULL DEFAULT '{}',   -- object (EFP) or array (jsPsych)
    conditions                 jsonb NOT NULL DEFAULT '{}',
    sequence                   jsonb NOT NULL DEFAULT '[]',
    global_event_timings       jsonb NOT NULL DEFAULT '[]',
    date_created               timestamptz NOT NULL DEFAULT now(),
    date_modified              timestamptz NOT NULL DEFAULT now(),
    is_preview                 boolean NOT NULL DEFAULT false,
    -- the parent's latest demographics when the response was created
    demographic_snapshot_id    bigint REFERENCES demographic_data(id) ON DELETE SET NULL,
    recording_method           text NOT NULL DEFAULT '',
    study_type                 smallint NOT NULL DEFAULT 1 CHECK (study_type IN (1, 2, 3)),
    eligibility                text[] NOT NULL DEFAULT '{}' CHECK (eligibility <@ ARRAY[
                                   'Eligible', 'Ineligible_TooYoung', 'Ineligible_TooOld',
                                   'Ineligible_CriteriaExpression',
                                   'Ineligible_Participation']::text[]),
    researcher_payment_status  text NOT NULL DEFAULT '',
    researcher_session_status  text NOT NULL DEFAULT '',
    researcher_star            boolean NOT NULL DEFAULT false,
    CHECK (jsonb_typeof(sequence) = 'array'),
    CHECK (jsonb_typeof(exp_data) IN ('object', 'array')),
    CHECK (jsonb_typeof(global_event_timings) = 'array')
);
CREATE TRIGGER responses_touch BEFORE UPDATE ON responses
    FOR EACH ROW EXECUTE FUNCTION touch_date_modified();
-- The runner's past-sessions list: one study, one child, newest first.
CREATE INDEX responses_study_child_idx ON responses (study_id, child_id, date_modified DESC, id DESC);
-- A participant's own responses (all studies) and ?child= filters.
CREATE INDEX responses_child_idx ON responses (child_id, date_modified DESC, id DESC);
-- A researcher's responses of one study.
CREATE INDEX responses_study_idx ON responses (study_id, date_modified DESC, id DESC);
CREATE INDEX responses_demographic_idx ON responses (demographic_snapshot_id);

CREATE TABLE consent_rulings (
    id           bigserial PRIMARY KEY,
    uuid         uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    response_id  bigint NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    action       text NOT NULL CHECK (action IN ('accepted', 'rejected', 'pending')),
    arbiter_id   bigint REFERENCES users(id) ON DELETE SET NULL,
    comments     text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_rulings_response_idx ON consent_rulings (response_id, created_at DESC, id DESC);
CREATE INDEX consent_rulings_arbiter_idx ON consent_rulings (arbiter_id);

-- The newest ruling wins; no ruling means pending.  A plain SQL scalar
-- function so the planner can inline it into list queries.
CREATE FUNCTION consent_status(p_response bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT action FROM consent_rulings
                      WHERE response_id = p_response
                      ORDER BY created_at DESC, id DESC LIMIT 1), 'pending')
$$;

CREATE TABLE feedback (
    id             bigserial PRIMARY KEY,
    uuid           uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    response_id    bigint NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    researcher_id  bigint REFERENCES users(id) ON DELETE SET NULL,
    comment        text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_response_idx ON feedback (response_id, created_at DESC, id DESC);
CREATE INDEX feedback_researcher_idx ON feedback (researcher_id);

-- ---------------------------------------------------------------- videos
CREATE TABLE videos (
    id                  bigserial PRIMARY KEY,
    uuid                uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    s3_timestamp        timestamptz,
    pipe_name           text UNIQUE,          -- NULL for direct S3 uploads
    pipe_numeric_id     bigint,
    frame_id            text NOT NULL DEFAULT '',
    full_name           text NOT NULL UNIQUE CHECK (full_name <> ''),
    study_id            bigint NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    response_id         bigint NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    is_consent_footage  boolean NOT NULL DEFAULT false
);
CREATE INDEX videos_response_idx ON videos (response_id, frame_id);
CREATE INDEX videos_study_idx ON videos (study_id, created_at DESC);

-- ---------------------------------------------------------------- study logs
CREATE TABLE study_logs (
    id          bigserial PRIMARY KEY,
    study_id    bigint NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    user_id     bigint REFERENCES users(id) ON DELETE SET NULL,
    action      text NOT NULL,
    extra       jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX study_logs_study_idx ON study_logs (study_id, created_at DESC, id DESC);

-- ---------------------------------------------------------------- permissions
-- Named permissions (lookit studies/permissions.py, with <DETAILS> spelt
-- "details").  Code asks for a permission, never for a group: the grants
-- below are data, so issue 5 can change who holds what without touching C.
CREATE TABLE permissions (
    name         text PRIMARY KEY,
    description  text NOT NULL
);
INSERT INTO permissions (name, description) VALUES
    ('read_study__details', 'See the study, its protocol and settings'),
    ('edit_study__details', 'Change the study and its protocol'),
    ('edit_study__status', 'Submit, retract, activate, pause, deactivate, archive'),
    ('edit_study__group__user_set', 'Add and remove study researchers'),
    ('read_study__responses', 'Read consented (non-preview) responses'),
    ('read_study__responses(is_preview=True)', 'Read preview responses'),
    ('edit_study__responses__consent_rulings', 'Rule on consent of responses'),
    ('edit_study__responses(is_preview=True)__consent_rulings', 'Rule on consent of preview responses'),
    ('edit_study__message_set', 'Contact participants'),
    ('edit_study__feedback', 'Leave feedback on responses'),
    ('edit_study__lab', 'Move the study to another lab'),
    ('delete_study__responses(is_preview=True)', 'Delete preview responses'),
    ('edit_study__approval', 'Approve or reject the study (site reviewers)'),
    -- site-wide (accounts.*) permissions
    ('can_read_all_user_data', 'Read every user, child and demographics record'),
    ('can_read_usernames', 'See the username (email) of users');

-- group_kind: 'site' (site admins), 'lab' (lab_members.role, an umbrella
-- over every study of the lab), 'study' (study_members.grp).
CREATE TABLE group_permissions (
    group_kind  text NOT NULL CHECK (group_kind IN ('site', 'lab', 'study')),
    group_name  text NOT NULL,
    permission  text NOT NULL REFERENCES permissions(name) ON UPDATE CASCADE ON DELETE CASCADE,
    PRIMARY KEY (group_kind, group_name, permission)
);

-- Site admins hold every permission.
INSERT INTO group_permissions (group_kind, group_name, permission)
SELECT 'site', 'admin', name FROM permissions;

INSERT INTO group_permissions (group_kind, group_name, permission)
SELECT 'lab', g.name, p.perm FROM (VALUES
    ('readonly', ARRAY['read_study__details']),
    ('member',   ARRAY['read_study__details', 'read_study__responses',
                       'read_study__responses(is_preview=True)']),
    ('admin',    ARRAY['read_study__details', 'read_study__responses',
                       'read_study__responses(is_preview=True)',
                       'edit_study__feedback',
                       'edit_study__responses__consent_rulings',
                       'edit_study__responses(is_preview=True)__consent_rulings'])
) AS g(name, perms), unnest(g.perms) AS p(perm);

INSERT INTO group_permissions (group_kind, group_name, permission)
SELECT 'study', g.name, p.perm FROM (VALUES
    ('preview',  ARRAY['read_study__details', 'read_study__responses(is_preview=True)']),
    ('design',   ARRAY['read_study__details', 'edit_study__details',
                       'read_study__responses(is_preview=True)',
                       'edit_study__responses(is_preview=True)__consent_rulings',
                       'delete_study__responses(is_preview=True)']),
    ('analysis', ARRAY['read_study__details', 'read_study__responses',
                       'read_study__responses(is_preview=True)']),
    ('submission_processor', ARRAY['read_study__details', 'read_study__responses',
                       'read_study__responses(is_preview=True)',
                       'edit_study__responses__consent_rulings',
                       'edit_study__responses(is_preview=True)__consent_rulings']),
    ('researcher', ARRAY['read_study__details', 'edit_study__details',
                       'read_study__responses', 'read_study__responses(is_preview=True)',
                       'edit_study__responses__consent_rulings',
                       'edit_study__responses(is_preview=True)__consent_rulings',
                       'edit_study__message_set',
                       'delete_study__responses(is_preview=True)']),
    ('manager',  ARRAY['read_study__details', 'edit_study__status',
                       'edit_study__group__user_set',
                       'read_study__responses', 'read_study__responses(is_preview=True)',
                       'edit_study__feedback', 'edit_study__message_set']),
    ('admin',    ARRAY['read_study__details', 'edit_study__details',
                       'edit_study__status', 'edit_study__group__user_set',
                       'read_study__responses', 'read_study__responses(is_preview=True)',
                       'edit_study__responses__consent_rulings',
                       'edit_study__responses(is_preview=True)__consent_rulings',
                       'edit_study__message_set', 'edit_study__feedback',
                       'edit_study__lab',
                       'delete_study__responses(is_preview=True)'])
) AS g(name, perms), unnest(g.perms) AS p(perm);

-- Site-wide permissions (no object): held through the site admins group.
CREATE FUNCTION has_site_perm(p_user bigint, p_perm text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM users u
          JOIN group_permissions gp
            ON gp.group_kind = 'site' AND gp.group_name = 'admin'
           AND gp.permission = p_perm
         WHERE u.id = p_user AND u.is_active AND u.is_site_admin
    )
$$;

-- THE permission check.  In upstream's order: a site-wide grant, the
-- object grant on the study, the umbrella grant on the study's lab.
-- Inactive users hold nothing.  Unknown users/studies/permissions: false.
CREATE FUNCTION has_study_perm(p_user bigint, p_study bigint, p_perm text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT has_site_perm(p_user, p_perm) OR EXISTS (
        SELECT 1 FROM study_members sm
          JOIN users u ON u.id = sm.user_id AND u.is_active
          JOIN group_permissions gp
            ON gp.group_kind = 'study' AND gp.group_name = sm.grp
           AND gp.permission = p_perm
         WHERE sm.study_id = p_study AND sm.user_id = p_user
    ) OR EXISTS (
        SELECT 1 FROM studies s
          JOIN lab_members lm ON lm.lab_id = s.lab_id AND lm.user_id = p_user
          JOIN users u ON u.id = lm.user_id AND u.is_active
          JOIN group_permissions gp
            ON gp.group_kind = 'lab' AND gp.group_name = lm.role
           AND gp.permission = p_perm
         WHERE s.id = p_study
    )
$$;
