//! URLs made fit for logs, errors and status pages: a Redis or node URL keeps its scheme, user,
//! host and path, and loses its password. Logs end up in tickets, chat and log shippers; a
//! password there is a password given away.

/// What stands in for a password.
const HIDDEN: &str = "***";

/// `url` with its password (`user:PASSWORD@`, and a `pass=` or `password=` query value, which
/// Redis unix-socket URLs use) replaced by `***`. A URL missing its scheme (an operator's typo,
/// quoted back in an error) is redacted the same way.
///
/// The user part ends at the last `@` of the URL: a password may itself hold `@` or `/`, and
/// hiding too much is safe where hiding too little is not.
pub fn url(url: &str) -> String {
    let (mut out, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let rest = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(HIDDEN);
                }
                // A user alone (`redis://ops@host`) is no secret.
                None => out.push_str(userinfo),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    match rest.split_once('?') {
        None => out.push_str(rest),
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((k, _))
                        if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                    {
                        out.push_str(k);
                        out.push('=');
                        out.push_str(HIDDEN);
                    }
                    _ => out.push_str(pair),
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn passwords_are_hidden_and_the_rest_is_kept() {
        for (given, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://127.0.0.1:6379/2", "redis://127.0.0.1:6379/2"),
            (
                "redis://:sekrit@127.0.0.1:6379",
                "redis://:***@127.0.0.1:6379",
            ),
            (
                "redis://ops:sekrit@10.0.0.5:6379/1",
                "redis://ops:***@10.0.0.5:6379/1",
            ),
            (
                "rediss://ops:sekrit@redis.example:6380",
                "rediss://ops:***@redis.example:6380",
            ),
            ("redis://ops@host:6379", "redis://ops@host:6379"),
            // An `@`, a `:` or a `/` in the password.
            (
                "redis://ops:p@ss:w/rd@host:6379",
                "redis://ops:***@host:6379",
            ),
            ("redis://:a@b@c@host:6379/0", "redis://:***@host:6379/0"),
            ("unix:///run/redis.sock", "unix:///run/redis.sock"),
            (
                "unix:///run/redis.sock?db=1&pass=sekrit",
                "unix:///run/redis.sock?db=1&pass=***",
            ),
            (
                "redis+unix:///run/redis.sock?user=ops&password=sekrit",
                "redis+unix:///run/redis.sock?user=ops&password=***",
            ),
            ("http://127.0.0.1:8332", "http://127.0.0.1:8332"),
            ("http://user:sekrit@node:8332", "http://user:***@node:8332"),
            (
                "http://user:sekrit@node:8332/wallet/pool",
                "http://user:***@node:8332/wallet/pool",
            ),
            ("node:8332", "node:8332"),
            ("user:sekrit@node:8332", "user:***@node:8332"),
            (
                "https://user:sekrit@node:8332",
                "https://user:***@node:8332",
            ),
            ("", ""),
        ] {
            assert_eq!(url(given), shown, "{given}");
            assert!(!url(given).contains("sekrit"));
        }
    }
}
