//! Reply-by-email addresses: `reply+TOKEN@<reply domain>`, one per ticket, put in the
//! `Reply-To` of the emails about the ticket, and read back from the mail that comes in
//! (src/inbound_mail.rs).
//!
//! TOKEN is `<slug>.<tag>`. The slug is already lowercase letters, digits and `-`; the tag is
//! 24 characters of lowercase base32 (no padding) over 15 bytes: 5 bytes naming the project
//! (a digest of its id, which may be long and mixed case, while mail servers may fold the local
//! part to lowercase and cap it at 64 characters) and the first 10 bytes of an HMAC-SHA256 over
//! the project id and the slug. The MAC is keyed with the session-token secret, with its own
//! label so that nothing else that secret signs can be replayed as a reply token, and the
//! previous session secrets still verify, so rotating the secret keeps older emails answerable
//! for as long as the operator keeps the old one.

use data_encoding::BASE32_NOPAD;
use fleety_actors::domain::{ProjectId, Slug};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// What goes before the `+`.
const PREFIX: &str = "reply";
/// The MAC's label: a reply token is signed for this purpose only.
const LABEL: &[u8] = b"fleety-reply-to-v1\0";
const PROJECT_REF: usize = 5;
const MAC_LEN: usize = 10;
const TAG_LEN: usize = PROJECT_REF + MAC_LEN;
/// RFC 5321's limit on the local part.
const MAX_LOCAL_PART: usize = 64;

/// Makes and reads reply addresses. Off (makes none, reads none) without a reply domain.
#[derive(Clone)]
pub struct ReplyAddresses {
    /// Lowercase.
    domain: Option<String>,
    /// The current secret first, then the previous ones.
    secrets: Vec<Vec<u8>>,
}

/// A reply token as read from an address, not yet checked against its project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyToken {
    pub slug: Slug,
    project_ref: [u8; PROJECT_REF],
    mac: [u8; MAC_LEN],
}

impl ReplyToken {
    /// Whether the token claims to be for `project` (checked by [`ReplyAddresses::verify`]
    /// too; this only narrows down which project to look at).
    pub fn names(&self, project: &ProjectId) -> bool {
        project_ref(project) == self.project_ref
    }
}

fn project_ref(project: &ProjectId) -> [u8; PROJECT_REF] {
    let digest = Sha256::digest(
        [
            b"fleety-reply-project:".as_slice(),
            project.as_str().as_bytes(),
        ]
        .concat(),
    );
    let mut out = [0; PROJECT_REF];
    out.copy_from_slice(&digest[..PROJECT_REF]);
    out
}

fn mac(secret: &[u8], project: &ProjectId, slug: &Slug) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(LABEL);
    mac.update(project.as_str().as_bytes());
    mac.update(b"\0");
    mac.update(slug.as_str().as_bytes());
    Some(mac)
}

impl ReplyAddresses {
    /// `domain`: where replies are received (none: reply by email is off). `secret` signs,
    /// `previous` secrets still verify.
    pub fn new(domain: Option<&str>, secret: &[u8], previous: &[&[u8]]) -> Self {
        let secrets = std::iter::once(secret)
            .chain(previous.iter().copied())
            .map(<[u8]>::to_vec)
            .collect();
        Self {
            domain: domain.map(str::to_ascii_lowercase),
            secrets,
        }
    }

    pub fn enabled(&self) -> bool {
        self.domain.is_some()
    }

    /// The address replies to this ticket go to; none when reply by email is off or the
    /// address would be longer than a local part may be.
    pub fn reply_to(&self, project: &ProjectId, slug: &Slug) -> Option<String> {
        let domain = self.domain.as_deref()?;
        let token = self.token(project, slug)?;
        let local = format!("{PREFIX}+{token}");
        (local.len() <= MAX_LOCAL_PART).then(|| format!("{local}@{domain}"))
    }

    fn token(&self, project: &ProjectId, slug: &Slug) -> Option<String> {
        let mut tag = [0u8; TAG_LEN];
        tag[..PROJECT_REF].copy_from_slice(&project_ref(project));
        let signed = mac(self.secrets.first()?, project, slug)?
            .finalize()
            .into_bytes();
        tag[PROJECT_REF..].copy_from_slice(&signed[..MAC_LEN]);
        let tag = BASE32_NOPAD.encode(&tag).to_ascii_lowercase();
        Some(format!("{}.{tag}", slug.as_str()))
    }

    /// The token of `address` if it is one of our reply addresses (`reply+TOKEN@<domain>`,
    /// any case, with or without a display name and angle brackets); its signature is not
    /// checked yet.
    pub fn parse(&self, address: &str) -> Option<ReplyToken> {
        let domain = self.domain.as_deref()?;
        let address = address.trim();
        let address = match (address.rfind('<'), address.rfind('>')) {
            (Some(open), Some(close)) if open < close => &address[open + 1..close],
            _ => address,
        };
        let (local, at) = address.trim().rsplit_once('@')?;
        if !at.eq_ignore_ascii_case(domain) {
            return None;
        }
        let local = local.to_ascii_lowercase();
        let token = local.strip_prefix(PREFIX)?.strip_prefix('+')?;
        let (slug, tag) = token.rsplit_once('.')?;
        let slug = Slug::parse(slug).ok()?;
        let tag = BASE32_NOPAD
            .decode(tag.to_ascii_uppercase().as_bytes())
            .ok()?;
        let tag: [u8; TAG_LEN] = tag.try_into().ok()?;
        let mut token = ReplyToken {
            slug,
            project_ref: [0; PROJECT_REF],
            mac: [0; MAC_LEN],
        };
        token.project_ref.copy_from_slice(&tag[..PROJECT_REF]);
        token.mac.copy_from_slice(&tag[PROJECT_REF..]);
        Some(token)
    }

    /// Whether `token` was signed by us for its ticket in `project` (with the current secret
    /// or a previous one), in constant time.
    pub fn verify(&self, token: &ReplyToken, project: &ProjectId) -> bool {
        token.names(project)
            && self.secrets.iter().any(|secret| {
                mac(secret, project, &token.slug)
                    .is_some_and(|m| m.verify_truncated_left(&token.mac).is_ok())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"the-current-secret-the-current-secret";
    const OLD: &[u8] = b"the-previous-secret-the-previous-secret";

    fn project(id: &str) -> ProjectId {
        ProjectId::parse(id).unwrap()
    }

    fn slug(s: &str) -> Slug {
        Slug::parse(s).unwrap()
    }

    fn addresses() -> ReplyAddresses {
        ReplyAddresses::new(Some("Mail.Example.com"), SECRET, &[])
    }

    #[test]
    fn a_reply_address_is_lowercase_short_and_verifies_for_its_ticket() {
        let (p, s) = (project("Acme_Support-Widget"), slug("swift-bear-053"));
        let address = addresses().reply_to(&p, &s).unwrap();
        assert_eq!(address, address.to_ascii_lowercase());
        let (local, domain) = address.split_once('@').unwrap();
        assert_eq!(domain, "mail.example.com");
        assert!(local.len() <= MAX_LOCAL_PART, "{local}");
        assert!(local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)));
        let token = addresses().parse(&address).unwrap();
        assert_eq!(token.slug, s);
        assert!(token.names(&p));
        assert!(addresses().verify(&token, &p));
        // A mail server that upper-cases the address, or a display name around it, changes
        // nothing.
        let shown = format!("\"Acme support\" <{}>", address.to_ascii_uppercase());
        assert_eq!(addresses().parse(&shown), Some(token));
    }

    #[test]
    fn a_token_for_another_ticket_or_project_or_secret_is_refused() {
        let (p, s) = (project("acme"), slug("swift-bear-053"));
        let address = addresses().reply_to(&p, &s).unwrap();
        let token = addresses().parse(&address).unwrap();
        assert!(!token.names(&project("other")));
        assert!(!addresses().verify(&token, &project("other")));
        // Another slug with the same tag.
        let moved = address.replace("swift-bear-053", "swift-bear-054");
        let moved = addresses().parse(&moved).unwrap();
        assert!(!addresses().verify(&moved, &p));
        // One changed character of the tag.
        let (local, domain) = address.split_once('@').unwrap();
        let last = local.chars().last().unwrap();
        let flipped = format!(
            "{}{}@{domain}",
            &local[..local.len() - 1],
            if last == 'a' { 'b' } else { 'a' }
        );
        let flipped = addresses().parse(&flipped);
        assert!(flipped.is_none_or(|t| !addresses().verify(&t, &p)));
        // Signed with another secret.
        let foreign = ReplyAddresses::new(Some("mail.example.com"), OLD, &[]);
        let token = addresses()
            .parse(&foreign.reply_to(&p, &s).unwrap())
            .unwrap();
        assert!(!addresses().verify(&token, &p));
    }

    #[test]
    fn previous_secrets_still_verify_and_the_current_one_signs() {
        let (p, s) = (project("acme"), slug("swift-bear-053"));
        let before = ReplyAddresses::new(Some("mail.example.com"), OLD, &[]);
        let old_address = before.reply_to(&p, &s).unwrap();
        let rotated = ReplyAddresses::new(Some("mail.example.com"), SECRET, &[OLD]);
        let token = rotated.parse(&old_address).unwrap();
        assert!(rotated.verify(&token, &p));
        assert_ne!(rotated.reply_to(&p, &s).unwrap(), old_address);
        assert_eq!(
            rotated.reply_to(&p, &s),
            addresses().reply_to(&p, &s).map(|a| a.to_ascii_lowercase())
        );
    }

    #[test]
    fn other_addresses_are_not_tokens() {
        let a = addresses();
        let p = project("acme");
        let good = a.reply_to(&p, &slug("swift-bear-053")).unwrap();
        for other in [
            "support@mail.example.com",
            "reply@mail.example.com",
            "reply+@mail.example.com",
            "reply+swift-bear-053@mail.example.com",
            "reply+swift-bear-053.abc@mail.example.com",
            &good.replace("mail.example.com", "evil.example.com"),
            &good.replace("reply+", "replay+"),
            "not an address",
        ] {
            assert_eq!(a.parse(other), None, "{other}");
        }
    }

    #[test]
    fn without_a_domain_there_is_no_reply_address() {
        let off = ReplyAddresses::new(None, SECRET, &[]);
        let (p, s) = (project("acme"), slug("swift-bear-053"));
        assert!(!off.enabled());
        assert_eq!(off.reply_to(&p, &s), None);
        let address = addresses().reply_to(&p, &s).unwrap();
        assert_eq!(off.parse(&address), None);
    }

    #[test]
    fn a_slug_too_long_for_a_local_part_gets_no_address() {
        let long = slug("abcdefghijklmnop-abcdefghijklmnop-123");
        assert_eq!(addresses().reply_to(&project("acme"), &long), None);
    }
}
