//! The example site's content: a catalogue of items, the HTML pages that list them,
//! the search API's answers, and the legacy-charset texts. Public so that tests
//! compute the rows they expect from the same data the site serves.

use serde_json::{json, Value};

/// Pages of the HTML list (`/list/1` .. `/list/LIST_PAGES`).
pub const LIST_PAGES: u32 = 5;
/// Items on one list page or one search answer.
pub const ITEMS_PER_PAGE: u32 = 10;
/// Text of the GBK pages.
pub const GBK_TEXT: &str = "中文页面：京东手机价格一千二百九十九元，库存充足，欢迎选购。";
/// Text of the GB18030 page: characters outside GBK (4-byte sequences) included.
pub const GB18030_TEXT: &str = "扩展汉字：𠀀𠀁𪚥，以及欧元符号€";

/// One catalogue item.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteItem {
    /// Item id, from 1.
    pub id: u32,
    /// Display title.
    pub title: String,
    /// Price in cents.
    pub price_cents: u64,
}

impl SiteItem {
    /// The item with this id.
    pub fn new(id: u32) -> Self {
        SiteItem {
            id,
            title: format!("Phone model {id}"),
            price_cents: 99_900 + u64::from(id) * 10_050,
        }
    }

    /// The price as shown on pages: `¥1,299.50`.
    pub fn price_text(&self) -> String {
        let yuan = self.price_cents / 100;
        let mut digits = yuan.to_string();
        let mut grouped = String::new();
        while digits.len() > 3 {
            let tail = digits.split_off(digits.len() - 3);
            grouped = format!(",{tail}{grouped}");
        }
        format!("¥{digits}{grouped}.{:02}", self.price_cents % 100)
    }

    /// The price as a number of yuan.
    pub fn price(&self) -> f64 {
        self.price_cents as f64 / 100.0
    }
}

/// The items of list page `page` (1-based); empty outside `1..=LIST_PAGES`.
pub fn list_items(page: u32) -> Vec<SiteItem> {
    if page == 0 || page > LIST_PAGES {
        return Vec::new();
    }
    let first = (page - 1) * ITEMS_PER_PAGE + 1;
    (first..first + ITEMS_PER_PAGE).map(SiteItem::new).collect()
}

/// The HTML of list page `page`: items with detail links and prices, and a pager
/// linking every list page (so each page repeats the others' links).
pub fn list_page(page: u32) -> String {
    let items: String = list_items(page)
        .iter()
        .map(|item| {
            format!(
                "<li class=\"item\" data-id=\"{id}\"><a class=\"title\" href=\"/item/{id}\">\n  {title} </a>\
                 <span class=\"price\">{price}</span></li>\n",
                id = item.id,
                title = item.title,
                price = item.price_text()
            )
        })
        .collect();
    let pager: String = (1..=LIST_PAGES)
        .map(|n| format!("<a class=\"page\" href=\"/list/{n}#top\">{n}</a> "))
        .collect();
    let next = if page < LIST_PAGES {
        format!("<a class=\"next\" href=\"/list/{}\">next</a>", page + 1)
    } else {
        String::new()
    };
    format!(
        "<!doctype html><html><head><title>List {page}</title></head><body>\
         <ul class=\"items\">\n{items}</ul><div class=\"pager\">{pager}{next}</div></body></html>"
    )
}

/// The HTML of item `id`'s detail page.
pub fn item_page(id: u32) -> String {
    let item = SiteItem::new(id);
    format!(
        "<!doctype html><html><head><title>{title}</title></head><body>\
         <h1 class=\"title\">{title}</h1><span class=\"price\">{price}</span>\
         <div class=\"desc\"><p>Item <b>{id}</b> description.</p></div></body></html>",
        title = item.title,
        price = item.price_text()
    )
}

/// The search API's items for a category and page, highest price first when `sort`
/// is `price_desc`.
pub fn search_items(category: &str, page: u32, sort: &str) -> Vec<Value> {
    let mut items = list_items(page.clamp(1, LIST_PAGES));
    if sort == "price_desc" {
        items.reverse();
    }
    items
        .iter()
        .map(|item| {
            json!({
                "wareId": item.id.to_string(),
                "wname": format!("{category} {}", item.title),
                "jdPrice": format!("{}.{:02}", item.price_cents / 100, item.price_cents % 100),
            })
        })
        .collect()
}

/// The HTML of a charset test page; `meta` goes into `<head>`.
pub fn text_page(text: &str, meta: &str) -> String {
    format!("<html><head>{meta}<title>charset</title></head><body><p class=\"text\">{text}</p></body></html>")
}

/// The link-bench page `n`: `show` links to pages no other page links to.
pub fn follow_page(n: u64, show: u64) -> String {
    let mut html = String::from("<html><head></head><body>");
    for k in 1..=show {
        let next = n.saturating_mul(show).saturating_add(k);
        html.push_str(&format!(
            "<a href='/follow/{next}?show={show}'>follow {next}</a><br>"
        ));
    }
    html.push_str("</body></html>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_text_groups_thousands() {
        let item = SiteItem {
            id: 0,
            title: String::new(),
            price_cents: 123_456_789,
        };
        assert_eq!(item.price_text(), "¥1,234,567.89");
        assert_eq!(
            SiteItem {
                price_cents: 5,
                ..item
            }
            .price_text(),
            "¥0.05"
        );
    }
}
