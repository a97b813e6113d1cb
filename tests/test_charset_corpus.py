"""Undeclared pages in the web's legacy encodings: is the saved text the text?

The corpus is built here from sentences in each language, short (one sentence) and long (a
paragraph), as text/plain and as text/html, with no charset anywhere (no header parameter,
BOM, <meta> or <?xml?>), served from a host under the language's country domain. A case is
right when the decoded text equals the text written. fetcher must be right at least as often
as Firefox's detector alone (chardetng with no domain hint).
"""

from __future__ import annotations

import unicodedata

import pytest

from fetcher.charset import decode

# (Python codec, country domain, sentences): every character is in the encoding
LANGUAGES: list[tuple[str, str, list[str]]] = [
    ("cp1252", "fr", ["Déjà vu : l'élève a préféré être à côté de la fenêtre.",
                      "Où est passée la clé du château ? Ça coûte très cher, hélas.",
                      "Les enfants français mangent des crêpes à la crème chaque été."]),
    ("cp1252", "pt", ["A informação não está disponível; ação e coração são palavras.",
                      "O pão de açúcar é uma atração turística no Brasil, não é?",
                      "Você já leu a edição de março? Está ótima e é grátis."]),
    ("cp1252", "de", ["Größere Übungen für Mädchen und Jungen: schön, aber schwierig.",
                      "Die Straße führt über die Brücke zum Schloß am Fluß.",
                      "Äpfel und Birnen schmecken im Herbst besonders süß."]),
    ("cp1252", "se", ["Räksmörgås och kött på söndag är en svensk tradition för många.",
                      "Är det här vägen till sjön? Nej, den ligger åt andra hållet.",
                      "Vi åkte skidor i fjällen och drack varm choklad på kvällen."]),
    ("cp1250", "pl", ["Zażółć gęślą jaźń: pchnąć w tę łódź jeża lub ośm skrzyń fig.",
                      "Wczoraj poszliśmy do kościoła, a potem na obiad u babci.",
                      "Księżyc świeci nad miastem, gdy wszyscy już śpią w łóżkach."]),
    ("cp1250", "cz", ["Příliš žluťoučký kůň úpěl ďábelské ódy nad řekou.",
                      "Včera jsme byli v divadle a představení se nám moc líbilo.",
                      "Děti si hrají na zahradě, zatímco maminka vaří večeři."]),
    ("iso8859_2", "hu", ["Árvíztűrő tükörfúrógép: a magyar ábécé minden ékezetes betűje.",
                         "Tegnap elmentünk a múzeumba, és sok érdekes képet láttunk.",
                         "A gyerekek örülnek, mert holnap nem kell iskolába menniük."]),
    ("cp1251", "ru", ["Съешь же ещё этих мягких французских булок, да выпей чаю.",
                      "Вчера мы гуляли в парке и видели много красивых деревьев.",
                      "Москва является столицей и крупнейшим городом России."]),
    ("cp1251", "bg", ["Жълтата дюля беше щастлива, че пухът, който цъфна, замръзна.",
                      "Вчера бяхме на планина и видяхме много красиви езера.",
                      "София е столицата и най-големият град на България."]),
    ("koi8_r", "ru", ["В чащах юга жил бы цитрус? Да, но фальшивый экземпляр!",
                      "Завтра будет солнечная погода, и мы поедем на дачу.",
                      "Библиотека открыта каждый день, кроме воскресенья."]),
    ("koi8_u", "ua", ["Чуєш їх, доцю, га? Кумедна ж ти, прощайся без ґольфів!",
                      "Вчора ми ходили до театру і дивилися нову виставу.",
                      "Київ є столицею та найбільшим містом України."]),
    ("cp866", "ru", ["Эх, чужак, общий съём цен шляп (юфть) - вдрызг!",
                     "Программа работает в текстовом режиме под управлением DOS.",
                     "Нажмите любую клавишу, чтобы продолжить работу с файлом."]),
    ("cp1253", "gr", ["Ξεσκεπάζω την ψυχοφθόρα βδελυγμία της γλώσσας.",
                      "Χθες πήγαμε στη θάλασσα και κολυμπήσαμε για ώρες.",
                      "Η Αθήνα είναι η πρωτεύουσα και η μεγαλύτερη πόλη της Ελλάδας."]),
    ("cp1254", "tr", ["Pijamalı hasta yağız şoföre çabucak güvendi, öyle değil mi?",
                      "Dün akşam arkadaşlarımla birlikte sinemaya gittik.",
                      "İstanbul, Türkiye'nin en kalabalık şehridir ve çok güzeldir."]),
    ("cp1255", "il", ["דג סקרן שט בים מאוכזב ולפתע מצא חברה נחמדה.",
                      "אתמול הלכנו לים ושחינו במים החמים במשך שעות.",
                      "ירושלים היא עיר עתיקה עם היסטוריה ארוכה ומרתקת."]),
    ("cp1256", "eg", ["نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر.",
                      "ذهبنا أمس إلى السوق واشترينا الكثير من الفواكه الطازجة.",
                      "القاهرة هي عاصمة مصر وأكبر مدنها من حيث عدد السكان."]),
    ("cp1257", "lv", ["Glāžšķūņa rūķīši dzērumā čiepj Baha koncertflīģeļu vākus.",
                      "Vakar mēs gājām uz jūru un peldējāmies siltajā ūdenī.",
                      "Rīga ir Latvijas galvaspilsēta un lielākā pilsēta."]),
    ("cp1257", "lt", ["Įlinkdama fechtuotojo špaga sublykčiojusi pragręžė apvalų arbūzą.",
                      "Vakar mes ėjome į parką ir matėme daug gražių medžių.",
                      "Vilnius yra Lietuvos sostinė ir didžiausias šalies miestas."]),
    ("cp1258", "vn", ["Tôi yêu tiếng nước tôi từ khi mới ra đời, người ơi.",
                      "Hôm qua chúng tôi đi chợ và mua rất nhiều trái cây.",
                      "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam."]),
    ("cp874", "th", ["เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
                     "เมื่อวานนี้เราไปเที่ยวทะเลและว่ายน้ำกันทั้งวัน",
                     "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย"]),
    ("iso8859_7", "gr", ["Γαζέες καί μυρτιές δέν θά βρώ πιά στό χρυσαφί ξέφωτο.",
                         "Η γάτα κοιμάται στον καναπέ όλο το απόγευμα.",
                         "Το καλοκαίρι πηγαίνουμε διακοπές στα νησιά του Αιγαίου."]),
    ("iso8859_8", "il", ["השמש זורחת מעל ההרים והציפורים שרות בבוקר.",
                         "הספרייה פתוחה כל יום חוץ משבת.",
                         "הילדים משחקים בגן ואוכלים גלידה."]),
    ("shift_jis", "jp", ["いろはにほへと　ちりぬるを　わかよたれそ　つねならむ。",
                         "昨日は友達と一緒に映画を見に行きました。とても面白かったです。",
                         "東京は日本の首都であり、世界有数の大都市です。"]),
    ("euc_jp", "jp", ["吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。",
                      "今日はとても良い天気なので、公園へ散歩に行きましょう。",
                      "京都には古いお寺や神社がたくさんあります。"]),
    ("iso2022_jp", "jp", ["春はあけぼの。やうやう白くなりゆく山ぎは、少しあかりて。",
                          "この電子メールは古い日本語の符号化で書かれています。",
                          "明日の会議は午後三時から始まります。"]),
    ("euc_kr", "kr", ["다람쥐 헌 쳇바퀴에 타고파. 키스의 고유조건은 입술끼리 만나야 하고.",
                      "어제 우리는 친구들과 함께 영화를 보러 갔습니다.",
                      "서울은 대한민국의 수도이며 가장 큰 도시입니다."]),
    ("gbk", "cn", ["我能吞下玻璃而不伤身体。这是一个用国标码编写的网页。",
                   "昨天我们和朋友一起去公园散步，天气非常好。",
                   "北京是中华人民共和国的首都，也是政治和文化中心。"]),
    ("big5", "tw", ["我能吞下玻璃而不傷身體。這是一個用大五碼編寫的網頁。",
                    "昨天我們和朋友一起去公園散步，天氣非常好。",
                    "臺北是臺灣最大的城市，有許多美味的小吃。"]),
]  # fmt: skip


def in_cp1258(text: str) -> str:
    """Vietnamese as windows-1258 writes it: a letter that has no code of its own is a base
    letter (itself perhaps precomposed, as ê) followed by a combining tone mark."""
    out = []
    for char in text:
        base, *marks = unicodedata.normalize("NFD", char)
        forms = [char] + [  # the base letter with one of its marks, the other mark after it
            unicodedata.normalize("NFC", base + mark) + "".join(m for m in marks if m != mark)
            for mark in marks
        ]
        for form in forms:
            try:
                form.encode("cp1258")
            except UnicodeEncodeError:
                continue
            out.append(form)
            break
        else:
            out.append(base + "".join(marks))
    return "".join(out)


LANGUAGES = [(c, t, [in_cp1258(s) for s in ss] if c == "cp1258" else ss) for c, t, ss in LANGUAGES]
FORMS = ["short plain", "short html", "long plain", "long html"]


def page(sentences: list[str], form: str) -> tuple[str, str]:
    """(text, content type) of one page of the corpus."""
    size, kind = form.split()
    text = sentences[0] if size == "short" else " ".join(sentences * 3)
    if kind == "plain":
        return text, "text/plain"
    return f"<!doctype html><html><head><title>{sentences[1][:20]}</title></head><body>" + "".join(
        f"<p>{s}</p>" for s in (sentences[:1] if size == "short" else sentences * 3)
    ) + "</body></html>", "text/html"


def cases() -> list[tuple[str, str, str, str, bytes]]:
    """(id, text, content type, URL, bytes) for every language and form."""
    built = []
    for codec, tld, sentences in LANGUAGES:
        for form in FORMS:
            text, content_type = page(sentences, form)
            url = f"http://www.example.{tld}/page"
            built.append((f"{codec}-{tld}-{form}", text, content_type, url, text.encode(codec)))
    return built


def chardetng_alone(body: bytes) -> str:
    """The text as the detector alone reads it (no domain hint)."""
    import chardetng_py

    from fetcher.charset import codec_for

    label = chardetng_py.detect(body, allow_utf8=False)
    return body.decode(codec_for(label) or "cp1252", "replace")


def test_the_corpus_is_what_it_says() -> None:
    assert len({codec for codec, _, _ in LANGUAGES}) >= 20
    for _, text, _, _, body in cases():  # else it would not be a legacy-encoding case
        assert not _is_utf8(body) or b"\x1b" in body, text[:30]  # ISO-2022-JP is 7-bit


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_fetcher_reads_undeclared_pages_at_least_as_well_as_chardetng() -> None:
    ours = alone = 0
    wrong = []
    for name, text, content_type, url, body in cases():
        decoded = decode(body, content_type, url)
        ours += decoded.text == text
        alone += chardetng_alone(body) == text
        if decoded.text != text:
            wrong.append(f"{name} ({decoded.encoding})")
        assert decoded.note is not None and decoded.note.startswith("charset guessed: ")
    total = len(cases())
    print(f"\nright: fetcher {ours}/{total}, chardetng alone {alone}/{total}; wrong: {wrong}")
    assert ours >= alone
    assert ours >= 0.9 * total, wrong


@pytest.mark.parametrize(
    "text", ["Déjà vu", "Crème brûlée à la française", "Ação, coração e informação"]
)
def test_short_western_european_text_is_windows_1252(text: str) -> None:
    decoded = decode(text.encode("cp1252"), "text/plain", "http://example.com/")
    assert decoded.text == text
    assert decoded.note == "charset guessed: windows-1252 (none declared)"


def test_the_domain_tips_the_guess() -> None:
    body = "こんにちは".encode("shift_jis")
    assert decode(body, "text/plain", "http://example.jp/").text == "こんにちは"
