// The widget's words in each language it speaks, and which way each is written. A locale is
// matched by its language ("de-AT" uses "de"); anything else falls back to English.

const en = {
  title: "Support",
  subtitle: "We usually answer within a few minutes",
  close: "Close",
  chatTab: "Chat",
  helpTab: "Help center",
  placeholder: "Write a message…",
  send: "Send",
  human: "Talk to a person",
  humanAsk: "I'd like to talk to a person, please.",
  welcome: "Hi! Ask me anything about our product. If I can't help, a person from our team will.",
  typing: "is typing…",
  assistant: "Assistant",
  agent: "Support team",
  you: "You",
  sources: "Sources",
  seen: "Seen",
  sending: "Sending…",
  failed: "Not sent. Tap to retry.",
  ticketOpened: "Ticket {slug} is open. Our team will answer here.",
  status: "Status: {status}",
  statusOpen: "open",
  statusPending: "waiting for you",
  statusResolved: "resolved",
  statusClosed: "closed",
  offline: "You're offline. Messages will be sent when you're back.",
  reconnecting: "Reconnecting…",
  limited: "Too many messages. Try again in {seconds} s.",
  error: "Something went wrong. Please try again.",
  searchPlaceholder: "Search the help center",
  search: "Search",
  noResults: "No articles found.",
  backToResults: "Back to results",
  closedTicket: "This conversation is closed.",
  rateAnswer: "Was this answer helpful?",
  helpful: "Helpful",
  notHelpful: "Not helpful",
  startNew: "Start a new conversation",
  earlier: "Earlier conversations",
  yours: "Your conversations",
  newConversation: "New conversation",
  unavailable: "Chat is not available on this site.",
  unreachable: "Can't reach support right now. Retrying…",
  refused: "Not sent: {reason}",
  count: "{n} / {max}",
  tooLong: "Too long: at most {max} characters.",
  csatAsk: "How did we do?",
  csatScore: "{n} of 5",
  csatComment: "Anything to add? (optional)",
  csatSend: "Send rating",
  csatSkip: "No thanks",
  csatThanks: "Thanks for your rating!",
  csatGiven: "You rated this conversation {n} of 5.",
  loadingEarlier: "Loading earlier messages…",
  showEarlier: "Show earlier messages",
};

type Words = typeof en;

const de: Words = {
  title: "Support",
  subtitle: "Wir antworten meist innerhalb weniger Minuten",
  close: "Schließen",
  chatTab: "Chat",
  helpTab: "Hilfe-Center",
  placeholder: "Nachricht schreiben…",
  send: "Senden",
  human: "Mit einer Person sprechen",
  humanAsk: "Ich möchte bitte mit einer Person sprechen.",
  welcome:
    "Hallo! Fragen Sie mich alles zu unserem Produkt. Wenn ich nicht helfen kann, übernimmt jemand aus unserem Team.",
  typing: "schreibt…",
  assistant: "Assistent",
  agent: "Support-Team",
  you: "Sie",
  sources: "Quellen",
  seen: "Gelesen",
  sending: "Wird gesendet…",
  failed: "Nicht gesendet. Tippen, um es erneut zu versuchen.",
  ticketOpened: "Ticket {slug} ist eröffnet. Unser Team antwortet hier.",
  status: "Status: {status}",
  statusOpen: "offen",
  statusPending: "wartet auf Sie",
  statusResolved: "gelöst",
  statusClosed: "geschlossen",
  offline: "Sie sind offline. Nachrichten werden gesendet, sobald Sie wieder online sind.",
  reconnecting: "Verbindung wird wiederhergestellt…",
  limited: "Zu viele Nachrichten. Bitte in {seconds} s erneut versuchen.",
  error: "Etwas ist schiefgelaufen. Bitte erneut versuchen.",
  searchPlaceholder: "Im Hilfe-Center suchen",
  search: "Suchen",
  noResults: "Keine Artikel gefunden.",
  backToResults: "Zurück zu den Ergebnissen",
  closedTicket: "Dieses Gespräch ist geschlossen.",
  rateAnswer: "War diese Antwort hilfreich?",
  helpful: "Hilfreich",
  notHelpful: "Nicht hilfreich",
  startNew: "Neues Gespräch beginnen",
  earlier: "Frühere Gespräche",
  yours: "Ihre Gespräche",
  newConversation: "Neues Gespräch",
  unavailable: "Der Chat ist auf dieser Website nicht verfügbar.",
  unreachable: "Der Support ist gerade nicht erreichbar. Neuer Versuch…",
  refused: "Nicht gesendet: {reason}",
  count: "{n} / {max}",
  tooLong: "Zu lang: höchstens {max} Zeichen.",
  csatAsk: "Wie zufrieden waren Sie?",
  csatScore: "{n} von 5",
  csatComment: "Möchten Sie etwas hinzufügen? (optional)",
  csatSend: "Bewertung senden",
  csatSkip: "Nein, danke",
  csatThanks: "Danke für Ihre Bewertung!",
  csatGiven: "Sie haben dieses Gespräch mit {n} von 5 bewertet.",
  loadingEarlier: "Frühere Nachrichten werden geladen…",
  showEarlier: "Frühere Nachrichten anzeigen",
};

const ar: Words = {
  title: "الدعم",
  subtitle: "نرد عادة خلال دقائق",
  close: "إغلاق",
  chatTab: "المحادثة",
  helpTab: "مركز المساعدة",
  placeholder: "اكتب رسالة…",
  send: "إرسال",
  human: "التحدث إلى شخص",
  humanAsk: "أود التحدث إلى شخص من فضلك.",
  welcome: "مرحبًا! اسألني أي شيء عن منتجنا. إن لم أستطع المساعدة فسيتولى أحد أعضاء فريقنا الأمر.",
  typing: "يكتب…",
  assistant: "المساعد",
  agent: "فريق الدعم",
  you: "أنت",
  sources: "المصادر",
  seen: "تمت القراءة",
  sending: "جارٍ الإرسال…",
  failed: "لم تُرسل. اضغط لإعادة المحاولة.",
  ticketOpened: "تم فتح التذكرة {slug}. سيرد فريقنا هنا.",
  status: "الحالة: {status}",
  statusOpen: "مفتوحة",
  statusPending: "بانتظارك",
  statusResolved: "تم الحل",
  statusClosed: "مغلقة",
  offline: "أنت غير متصل. ستُرسل الرسائل عند عودة الاتصال.",
  reconnecting: "جارٍ إعادة الاتصال…",
  limited: "رسائل كثيرة جدًا. حاول مجددًا بعد {seconds} ث.",
  error: "حدث خطأ ما. حاول مجددًا.",
  searchPlaceholder: "ابحث في مركز المساعدة",
  search: "بحث",
  noResults: "لم يتم العثور على مقالات.",
  backToResults: "العودة إلى النتائج",
  closedTicket: "هذه المحادثة مغلقة.",
  rateAnswer: "هل كانت هذه الإجابة مفيدة؟",
  helpful: "مفيدة",
  notHelpful: "غير مفيدة",
  startNew: "بدء محادثة جديدة",
  earlier: "المحادثات السابقة",
  yours: "محادثاتك",
  newConversation: "محادثة جديدة",
  unavailable: "الدردشة غير متاحة على هذا الموقع.",
  unreachable: "تعذر الوصول إلى الدعم الآن. جارٍ إعادة المحاولة…",
  refused: "لم تُرسل: {reason}",
  count: "{n} / {max}",
  tooLong: "طويلة جدًا: {max} حرف على الأكثر.",
  csatAsk: "ما مدى رضاك عن المساعدة؟",
  csatScore: "{n} من 5",
  csatComment: "هل تريد إضافة شيء؟ (اختياري)",
  csatSend: "إرسال التقييم",
  csatSkip: "لا، شكرًا",
  csatThanks: "شكرًا على تقييمك!",
  csatGiven: "قيّمت هذه المحادثة بـ {n} من 5.",
  loadingEarlier: "جارٍ تحميل الرسائل السابقة…",
  showEarlier: "عرض الرسائل السابقة",
};

const LANGUAGES: Record<string, Words> = { en, de, ar };
const RIGHT_TO_LEFT = new Set(["ar", "he", "fa", "ur"]);

export type Key = keyof Words;

export interface Translator {
  (key: Key, vars?: Record<string, string | number>): string;
  lang: string;
  dir: "ltr" | "rtl";
}

export function translator(locale: string): Translator {
  const lang = locale.split(/[-_]/)[0].toLowerCase();
  const words = LANGUAGES[lang] ?? en;
  const t = ((key: Key, vars?: Record<string, string | number>) => {
    let text = words[key] ?? en[key];
    for (const [name, value] of Object.entries(vars ?? {})) {
      text = text.replace(`{${name}}`, String(value));
    }
    return text;
  }) as Translator;
  t.lang = LANGUAGES[lang] ? lang : "en";
  t.dir = RIGHT_TO_LEFT.has(t.lang) ? "rtl" : "ltr";
  return t;
}
