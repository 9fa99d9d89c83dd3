//! fnmatch-style patterns for `define_metric` names: `*` matches any run of characters (`/`
//! included), `?` exactly one character, and every other character only itself (`[` is not
//! special). Matching is iterative, O(pattern × name) at worst, never exponential.

/// fnmatch-style matching of a whole `name`: `*` matches any run of characters (`/` too),
/// `?` exactly one character; every other character matches itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern == name;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            // Let the last `*` absorb one more character and retry.
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_fnmatch_star_and_question_mark() {
        let yes = [
            ("val/*", "val/loss"),
            ("val/*", "val/"),
            ("val/*", "val/a/b"),
            ("*", "anything/at/all"),
            ("*loss", "train/loss"),
            ("a?c", "abc"),
            ("a*b*c", "a__b__b_c"),
            ("*/acc", "x/y/acc"),
            ("lösung/?", "lösung/ü"),
            ("loss", "loss"),
            ("**", ""),
        ];
        for (p, n) in yes {
            assert!(glob_match(p, n), "{p} should match {n}");
        }
        let no = [
            ("val/*", "train/loss"),
            ("val/*", "val"),
            ("a?c", "ac"),
            ("a?c", "abbc"),
            ("loss", "loss2"),
            ("*loss", "loss/x"),
            ("a*b*c", "a__b__b_"),
            ("[ab]", "a"),
        ];
        for (p, n) in no {
            assert!(!glob_match(p, n), "{p} should not match {n}");
        }
        // Many stars against a long name stay fast (no exponential backtracking).
        let name = "a".repeat(2000);
        assert!(!glob_match(&format!("{}b", "*a".repeat(50)), &name));
    }
}
