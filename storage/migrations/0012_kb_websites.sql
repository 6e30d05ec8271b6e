-- Websites crawled into a bot's knowledge base (BASIC USE WEBSITE, botserver kb crawl):
-- one row per bot and site, shared by every gateway instance, so a site is crawled once per
-- bot whatever the number of sessions and instances naming it.
--   * url: the site's start URL, normalized (pipeline.kb.web_urls.normalize_url).
--   * collection: the knowledge-base collection its pages are indexed in (kb_documents rows
--     whose source_path is the page's URL).
--   * refresh / refresh_seconds: General Bots' REFRESH interval ('1d', '1w', '1m' ...); when
--     several dialogs name the site, the shortest wins.
--   * status: 'pending' (never crawled), 'crawling', 'crawled', 'failed' (error says why).
--   * next_crawl: when the site is due; claimed_by / claimed_until: the instance crawling it
--     and its lease, renewed while it works (an expired lease makes the crawl claimable
--     again, on any instance, and it resumes from progress).
--   * progress: the running crawl's frontier, visited URLs and counters (JSON), so a crawl
--     cut by a restart goes on where it stopped; NULL between crawls.
CREATE TABLE kb_websites (
    bot_id VARCHAR(100) NOT NULL,
    url TEXT NOT NULL,
    collection VARCHAR(100) NOT NULL,
    refresh VARCHAR(20) NOT NULL DEFAULT '1m',
    refresh_seconds INTEGER NOT NULL DEFAULT 2592000,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',
    next_crawl TIMESTAMPTZ NOT NULL DEFAULT now(),
    claimed_by VARCHAR(100),
    claimed_until TIMESTAMPTZ,
    progress JSONB,
    last_crawled TIMESTAMPTZ,
    pages INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, url)
);

-- What the crawlers poll: the sites due next.
CREATE INDEX idx_kb_websites_due ON kb_websites (next_crawl);
