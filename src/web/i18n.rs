//! The pages' words in English and Chinese. The language follows the `taskbus_lang`
//! cookie (set by the links in the footer), else the browser's `Accept-Language`.

use axum::http::{header, HeaderMap};
use axum_extra::extract::cookie::CookieJar;

/// The cookie that holds a chosen language.
pub const LANG_COOKIE: &str = "taskbus_lang";

/// A language of the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// The language of a request: the cookie, else the first language the browser
    /// names that the pages speak, else English.
    pub fn of(headers: &HeaderMap) -> Lang {
        let jar = CookieJar::from_headers(headers);
        if let Some(lang) = jar.get(LANG_COOKIE).and_then(|c| Lang::parse(c.value())) {
            return lang;
        }
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        accept
            .split(',')
            .filter_map(|part| Lang::parse(part.split(';').next().unwrap_or("").trim()))
            .next()
            .unwrap_or(Lang::En)
    }

    /// `en`, `en-GB`, `zh`, `zh-CN` ...; `None` for other languages.
    pub fn parse(code: &str) -> Option<Lang> {
        let primary = code
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The `lang` attribute of the page.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// The word for `key`; the key itself when the table lacks it.
    pub fn t(self, key: &'static str) -> &'static str {
        match WORDS.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, zh)) => match self {
                Lang::En => en,
                Lang::Zh => zh,
            },
            None => key,
        }
    }
}

/// key, English, Chinese.
const WORDS: &[(&str, &str, &str)] = &[
    ("overview", "Overview", "概览"),
    ("workers", "Workers", "工作进程"),
    ("schedules", "Total tasks", "总任务"),
    ("dead", "Dead letters", "死信"),
    ("audit", "Audit log", "审计日志"),
    ("users", "Users and tokens", "用户与令牌"),
    ("search", "Search", "搜索"),
    ("search_hint", "guid or topic", "任务 guid 或主题"),
    ("logout", "Log out", "退出登录"),
    ("topic", "Topic", "主题"),
    ("topics", "Topics", "主题"),
    ("ready", "Ready", "就绪"),
    ("pending", "Pending", "提交中"),
    ("delayed", "Delayed", "延迟"),
    ("leased", "Leased", "执行中"),
    ("done", "Done", "完成"),
    ("failed", "Failed", "失败"),
    ("refresh", "Refresh", "刷新"),
    ("off", "off", "关闭"),
    ("live_on", "Counters refresh live.", "计数实时刷新。"),
    ("no_topics", "No topic yet.", "暂无主题。"),
    ("store", "Store", "存储"),
    ("id", "Id", "编号"),
    ("stage", "Stage", "阶段"),
    ("capacity", "Capacity", "容量"),
    ("in_flight", "In flight", "处理中"),
    ("heartbeat", "Heartbeat age", "心跳间隔"),
    ("stale", "stale", "失联"),
    ("orphans", "Tasks wait with no worker for their topic", "以下主题有任务等待但没有工作进程"),
    ("no_workers", "No worker connected.", "没有已连接的工作进程。"),
    ("state", "State", "状态"),
    ("all", "all", "全部"),
    ("filter", "Filter", "筛选"),
    ("guid", "Guid", "guid"),
    ("attempt", "Attempt", "尝试次数"),
    ("max_retry", "Max retry", "最大重试"),
    ("holder", "Holder", "持有者"),
    ("expires", "Expires in", "剩余"),
    ("error", "Error", "错误"),
    ("created", "Created", "创建时间"),
    ("finished", "Finished", "完成时间"),
    ("outcome", "Outcome", "结果"),
    ("no_tasks", "No task.", "没有任务。"),
    ("task", "Task", "任务"),
    ("not_found", "Nothing found", "未找到"),
    ("body_note", "A finished task's body is no longer kept.", "已完成任务的任务体不再保留。"),
    ("body", "Body", "任务体"),
    ("body_large", "Larger than 64 KiB: not shown.", "大于 64 KiB：不显示。"),
    ("trigger", "Trigger", "触发器"),
    ("timezone", "Time zone", "时区"),
    ("next_fire", "Next fire", "下次触发"),
    ("last_result", "Last result", "上次结果"),
    ("status", "Status", "状态"),
    ("actions", "Actions", "操作"),
    ("pause", "Pause", "暂停"),
    ("resume", "Resume", "恢复"),
    ("delete", "Delete", "删除"),
    ("add", "Add", "添加"),
    ("add_schedule", "Add a total task", "添加总任务"),
    ("body_json", "Body (JSON)", "任务体 (JSON)"),
    ("interval_secs", "Interval (seconds)", "间隔（秒）"),
    ("cron", "Cron (m h dom mon dow)", "Cron（分 时 日 月 周）"),
    ("trigger_hint", "Give an interval or a cron line.", "填写间隔或 cron 表达式。"),
    ("no_schedules", "No total task.", "没有总任务。"),
    ("confirm_delete", "Delete this total task?", "删除此总任务？"),
    ("confirm_delete_text", "Its queued instances are dropped and workers holding them are told to cancel. This cannot be undone.", "其排队中的实例将被丢弃，持有它们的工作进程会收到取消通知。此操作不可撤销。"),
    ("cancel", "Cancel", "取消"),
    ("reason", "Reason", "原因"),
    ("retry", "Retry", "重试"),
    ("purge", "Purge", "清除"),
    ("retry_all", "Retry all", "全部重试"),
    ("purge_all", "Purge all", "全部清除"),
    ("confirm_purge", "I want to purge every dead letter shown by this filter", "我确认清除此筛选下的所有死信"),
    ("no_dead", "No dead letter.", "没有死信。"),
    ("total", "Total", "总数"),
    ("when", "When", "时间"),
    ("who", "Who", "操作者"),
    ("action", "Action", "动作"),
    ("detail", "Detail", "详情"),
    ("no_audit", "The audit log is empty.", "审计日志为空。"),
    ("older", "Older", "更早"),
    ("user", "User", "用户"),
    ("role", "Role", "角色"),
    ("password", "Password", "密码"),
    ("add_user", "Add a user", "添加用户"),
    ("remove", "Remove", "移除"),
    ("tokens", "API tokens", "API 令牌"),
    ("token_name", "Token name", "令牌名称"),
    ("create_token", "Create a token", "创建令牌"),
    ("revoke", "Revoke", "吊销"),
    ("last_used", "Last used", "最近使用"),
    ("never", "never", "从未"),
    ("token_once", "The new token (shown this once; copy it now):", "新令牌（仅显示这一次，请立即复制）："),
    ("saved", "Done.", "已完成。"),
    ("refused", "Refused", "已拒绝"),
    ("back", "Back", "返回"),
    ("name", "Name", "名称"),
    ("skip", "Skip to content", "跳到正文"),
    ("language", "Language", "语言"),
    ("signed_in_as", "Signed in as", "当前用户"),
    ("main_nav", "Main", "主导航"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_cookie_wins_over_the_browser() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("zh-CN,zh;q=0.9,en;q=0.8"),
        );
        assert_eq!(Lang::of(&headers), Lang::Zh);
        headers.insert(header::COOKIE, HeaderValue::from_static("taskbus_lang=en"));
        assert_eq!(Lang::of(&headers), Lang::En);
    }

    #[test]
    fn unknown_languages_fall_back_to_english() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("fr-FR,de;q=0.5"),
        );
        assert_eq!(Lang::of(&headers), Lang::En);
        assert_eq!(Lang::En.t("no such key"), "no such key");
        assert_eq!(Lang::Zh.t("dead"), "死信");
    }

    #[test]
    fn every_key_is_unique() {
        let mut keys: Vec<&str> = WORDS.iter().map(|(k, _, _)| *k).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(n, keys.len());
    }
}
