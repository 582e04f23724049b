//! Word lists of the search's analysers, per language.
//!
//! *Filler* words say nothing about a question's topic ("How do I get ...", "Wie kann ich ...",
//! "كيف ..."): they are left out when measuring how much of a question a passage covers
//! ([`super::index`]). They are matched after lower-casing and before stemming, so inflected
//! forms are listed. The analysers' stop words (tantivy's lists; Lucene's short list for
//! English) are removed before these, so they need not be repeated here.

/// English. The stop words are Lucene's short list, so pronouns and question words are here.
#[rustfmt::skip]
pub const EN_FILLER: &[&str] = &[
    "i", "me", "my", "mine", "myself", "you", "your", "yours", "we", "us", "our", "he", "she",
    "him", "her", "his", "its", "them", "how", "what", "why", "when", "where", "which", "who",
    "whom", "whose", "do", "does", "did", "doing", "done", "have", "has", "had", "having", "am",
    "was", "were", "been", "being", "should", "so", "than", "too", "very", "from", "about", "up",
    "out", "any", "some", "all", "each", "every", "here", "now", "again", "don", "doesn", "didn",
    "can't", "t", "s", "m", "ve", "ll", "d", "re", "want", "wanted", "wants", "need", "needs",
    "get", "gets", "got", "please", "pls", "help", "hi", "hello", "hey", "thanks", "thank", "know",
    "like", "would", "could", "can", "will", "shall", "may", "might", "must", "use", "using",
    "way", "possible", "tell", "able", "anyone", "someone", "something", "anything", "thing",
    "things", "also", "really", "just", "still", "already", "ok", "okay", "yes", "make", "let",
    "go", "one", "much", "many", "there", "there's", "it's", "i'm", "long", "take", "takes",
    "took", "time", "soon", "often", "happen", "happens", "even", "ever", "anymore",
];

#[rustfmt::skip]
pub const DE_FILLER: &[&str] = &[
    "wie", "was", "warum", "wieso", "weshalb", "wann", "wo", "woher", "wohin", "welche", "welcher",
    "welches", "welchen", "wer", "wen", "wem", "ich", "mein", "meine", "meinen", "meinem",
    "meiner", "sie", "ihr", "ihre", "ihren", "ihrem", "wir", "uns", "unser", "unsere", "kann",
    "kannst", "können", "könnt", "konnte", "muss", "musst", "müssen", "soll", "sollte", "will",
    "möchte", "möchten", "würde", "würden", "darf", "dürfen", "habe", "hast", "hat", "haben",
    "gibt", "geht", "mache", "machen", "bitte", "danke", "hallo", "hilfe", "helfen", "brauche",
    "brauchen", "mal", "gerne", "schon", "noch", "immer", "jetzt", "nun", "eigentlich", "möglich",
    "irgendwie", "etwas", "bekomme", "bekommen", "lange", "dauert", "oft",
];

#[rustfmt::skip]
pub const FR_FILLER: &[&str] = &[
    "comment", "quoi", "pourquoi", "quand", "où", "quel", "quelle", "quels", "quelles", "qui",
    "que", "qu", "est", "ce", "je", "j", "me", "m", "mon", "ma", "mes", "vous", "votre", "vos",
    "nous", "notre", "nos", "puis", "peux", "peut", "pouvez", "pouvons", "dois", "doit", "devez",
    "faut", "veux", "voudrais", "voulez", "faire", "fait", "ai", "avez", "a", "y", "il", "merci",
    "bonjour", "salut", "aide", "aider", "besoin", "svp", "plaît", "possible", "encore",
    "toujours", "déjà", "maintenant", "combien", "temps", "obtenir",
];

#[rustfmt::skip]
pub const ES_FILLER: &[&str] = &[
    "cómo", "como", "qué", "que", "por", "porqué", "cuándo", "cuando", "dónde", "donde", "cuál",
    "cual", "cuáles", "quién", "quien", "yo", "mi", "mis", "me", "usted", "ustedes", "su", "sus",
    "nosotros", "nuestro", "nuestra", "puedo", "puede", "pueden", "podemos", "debo", "debe",
    "tengo", "tiene", "tienen", "hay", "quiero", "quisiera", "hacer", "hago", "necesito", "ayuda",
    "ayudar", "hola", "gracias", "favor", "posible", "todavía", "ya", "ahora", "cuánto", "cuanto",
    "tiempo", "tarda", "obtener", "conseguir",
];

#[rustfmt::skip]
pub const IT_FILLER: &[&str] = &[
    "come", "cosa", "che", "perché", "quando", "dove", "quale", "quali", "chi", "io", "mio", "mia",
    "miei", "mie", "lei", "voi", "vostro", "vostra", "noi", "nostro", "nostra", "posso", "può",
    "potete", "possiamo", "devo", "deve", "ho", "ha", "hanno", "c", "è", "voglio", "vorrei",
    "fare", "faccio", "bisogno", "aiuto", "aiutare", "ciao", "grazie", "salve", "favore",
    "possibile", "ancora", "già", "adesso", "ora", "quanto", "tempo", "ottenere",
];

#[rustfmt::skip]
pub const NL_FILLER: &[&str] = &[
    "hoe", "wat", "waarom", "wanneer", "waar", "welke", "welk", "wie", "ik", "mijn", "u", "uw",
    "jij", "je", "jouw", "we", "wij", "ons", "onze", "kan", "kun", "kunt", "kunnen", "moet",
    "moeten", "heb", "hebt", "heeft", "hebben", "wil", "wilt", "willen", "zou", "graag", "doen",
    "maken", "nodig", "hulp", "helpen", "hallo", "hoi", "bedankt", "dank", "alstublieft",
    "alsjeblieft", "mogelijk", "nog", "al", "nu", "lang", "duurt", "krijgen",
];

#[rustfmt::skip]
pub const PT_FILLER: &[&str] = &[
    "como", "o", "que", "quê", "porque", "quando", "onde", "qual", "quais", "quem", "eu", "meu",
    "minha", "meus", "minhas", "você", "vocês", "seu", "sua", "nós", "nosso", "nossa", "posso",
    "pode", "podem", "podemos", "devo", "deve", "tenho", "tem", "têm", "há", "quero", "queria",
    "gostaria", "fazer", "faço", "preciso", "ajuda", "ajudar", "olá", "oi", "obrigado", "obrigada",
    "favor", "possível", "ainda", "já", "agora", "quanto", "tempo", "obter", "conseguir",
];

/// Arabic, written without diacritics (the tokenizer drops them) and in the common spellings
/// of alef: the filter runs before the stemmer, which normalises letters.
#[rustfmt::skip]
pub const AR_FILLER: &[&str] = &[
    "كيف", "كيفية", "ماذا", "ما", "لماذا", "متى", "أين", "اين", "أي", "اي", "هل", "من", "أنا",
    "انا", "لي", "نحن", "لنا", "أنت", "انت", "أنتم", "يمكنني", "يمكن", "يمكنك", "أستطيع", "استطيع",
    "أريد", "اريد", "نريد", "أود", "احتاج", "أحتاج", "مساعدة", "ساعدني", "مرحبا", "شكرا", "شكراً",
    "لو", "سمحت", "فضلك", "ممكن", "الآن", "الان", "لا", "أفعل", "افعل",
];

/// Arabic has no stop-word list in tantivy: the particles and pronouns that would otherwise
/// match nearly every passage.
#[rustfmt::skip]
pub const AR_STOP: &[&str] = &[
    "في", "من", "إلى", "الى", "على", "عن", "مع", "و", "أو", "او", "ثم", "أن", "ان", "إن", "هذا",
    "هذه", "ذلك", "تلك", "الذي", "التي", "الذين", "هو", "هي", "هم", "كل", "بعض", "قد", "لقد",
    "كان", "كانت", "يكون", "تكون", "عند", "عندما", "إذا", "اذا", "لم", "لن", "ليس", "بين", "حتى",
    "كما", "أيضا", "ايضا", "به", "بها", "له", "لها", "فيه", "فيها", "منه", "منها",
];

/// Words a visitor uses for what a help center says otherwise: each group's words count as one
/// when a passage's coverage of a question is measured, and are searched for each other (at a
/// lower weight). General support vocabulary, not one product's: a help center speaks of
/// "turning on" what a visitor wants to "enable", of "pricing" where they ask what it "costs".
/// Only words that stand for each other: a broader word ("device" for "phone") would let a
/// question about something the help center lacks ("a mobile app") borrow an article's
/// coverage.
#[rustfmt::skip]
pub const EN_SYNONYMS: &[&[&str]] = &[
    &["enable", "activate", "turn", "switch"],
    &["disable", "deactivate", "off"],
    &["delete", "remove", "erase", "close", "deleting", "deleted"],
    &["permanently", "forever"],
    &["cost", "costs", "price", "prices", "pricing", "fee", "fees"],
    &["maximum", "max", "limit", "limits", "largest", "biggest"],
    &["size", "big", "large", "mb", "gb"],
    &["cancel", "cancellation", "unsubscribe", "stop"],
    &["subscription", "plan", "membership"],
    &["download", "save", "export"],
    &["upload", "import", "attach"],
    &["phone", "mobile", "smartphone"],
    &["laptop", "computer", "desktop", "pc", "mac"],
    &["login", "log", "signin", "sign"],
    &["password", "passcode"],
    &["email", "mail"],
    &["invoice", "invoices", "receipt", "receipts", "bill", "billing"],
    &["refund", "refunds", "money", "reimburse"],
    &["card", "payment", "pay", "paypal"],
    &["colleague", "coworker", "teammate", "member", "members"],
    &["invite", "invitation"],
    &["share", "sharing", "collaborate", "collaborator"],
    &["restore", "recover", "undo", "back"],
    &["backup", "backups", "archive", "copy"],
    &["old", "older", "earlier", "previous"],
    &["internet", "online", "connection", "offline", "wifi"],
    &["problem", "issue", "error", "broken", "fails", "failing", "fail"],
    &["find", "search", "look"],
    &["secure", "security", "safe", "protected", "encrypted", "encryption"],
    &["storage", "space", "quota"],
    &["team", "company", "organisation", "organization"],
    &["change", "update", "edit", "modify", "replace"],
];

#[rustfmt::skip]
pub const DE_SYNONYMS: &[&[&str]] = &[
    &["aktivieren", "einschalten", "anschalten"],
    &["löschen", "entfernen", "kündigen"],
    &["kosten", "preis", "preise", "kostet"],
    &["rechnung", "rechnungen", "beleg", "quittung"],
    &["handy", "telefon", "smartphone", "mobil"],
    &["anmelden", "anmeldung", "login", "einloggen"],
    &["ändern", "aktualisieren", "bearbeiten"],
];

#[rustfmt::skip]
pub const ES_SYNONYMS: &[&[&str]] = &[
    &["pedir", "pido", "solicitar", "solicito", "solicitud"],
    &["activar", "habilitar", "encender"],
    &["borrar", "eliminar", "cerrar"],
    &["precio", "precios", "cuesta", "coste", "costo"],
    &["factura", "facturas", "recibo", "recibos"],
    &["móvil", "teléfono", "celular"],
    &["cambiar", "actualizar", "modificar"],
];

#[rustfmt::skip]
pub const FR_SYNONYMS: &[&[&str]] = &[
    &["téléphone", "portable", "mobile", "mobiles", "smartphone"],
    &["activer", "activez", "allumer"],
    &["supprimer", "effacer", "fermer"],
    &["prix", "coût", "tarif", "tarifs", "coûte"],
    &["facture", "factures", "reçu", "reçus"],
    &["demander", "demande", "solliciter"],
    &["changer", "modifier", "mettre"],
];
