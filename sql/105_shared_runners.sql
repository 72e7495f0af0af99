-- 105_shared_runners (issue 19): a runner is built once per repository,
-- commit and build environment, for every study that uses it.  Its files
-- stay under runners/<cache_key>/ in storage with that prefix compiled
-- into their asset URLs (PREPEND_FINGERPRINT=/runners/<cache_key>/), and a
-- study serves the index.html of its latest successful build of the mode
-- (deploy: /studies/<uuid>/<child>/, preview: the preview page) straight
-- from there: going live on a runner built before copies nothing.
--
-- shared: the build serves from runners/<cache_key>/ (every build from
-- this migration on).  Older builds (false) were copied to
-- experiments/<uuid>/ or preview_experiments/<uuid>/ with the study's own
-- prefix; those folders keep being served until the study builds again.
ALTER TABLE study_builds ADD COLUMN shared boolean NOT NULL DEFAULT false;

-- The runner page's lookup: the latest successful build of a mode.
CREATE INDEX study_builds_live ON study_builds (study_id, mode, task_id DESC)
    WHERE outcome = 'succeeded';
-- The runner cleanup's question: does any study still serve this runner.
CREATE INDEX study_builds_cache_key ON study_builds (cache_key) WHERE shared;
