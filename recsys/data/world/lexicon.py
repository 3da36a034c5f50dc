"""The words of the preference world: categories, aspects and the sentence templates built from them.

Aspects are two-pole properties ("lightweight" vs "heavy"). An item has a few salient aspects,
each at one pole; its title and description name those poles, its reviews judge them, and users
state preferences about them. Every category lists the aspects typical for it, so a hiking tent
is more often described by weight than by humor, yet any aspect can occur anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Aspect:
    key: str
    positive: str  # the adjective of pole +1
    negative: str  # the adjective of pole -1
    feature: str  # what a review calls this property ("the weight")

    def pole(self, value: int) -> str:
        return self.positive if value > 0 else self.negative


@dataclass(frozen=True)
class Category:
    name: str  # a plural phrase that fits "looks for lightweight {name}"
    nouns: tuple[str, ...]  # singular item nouns
    contexts: tuple[str, ...]  # "for weekend trips"
    aspects: tuple[str, ...]  # keys of the aspects typical for the category
    blurbs: tuple[str, ...]  # aspect-neutral sentences for descriptions


# Ordered so that small worlds (the first n aspects and categories) still cover each other well.
ASPECTS: tuple[Aspect, ...] = (
    Aspect("weight", "lightweight", "heavy", "weight"),
    Aspect("scent", "strongly scented", "unscented", "scent"),
    Aspect("tone", "lighthearted", "dark", "tone"),
    Aspect("noise", "quiet", "loud", "sound"),
    Aspect("sweetness", "sweet", "bitter", "taste"),
    Aspect("complexity", "simple", "intricate", "complexity"),
    Aspect("durability", "rugged", "delicate", "build"),
    Aspect("intensity", "bold", "gentle", "intensity"),
    Aspect("pace", "fast-paced", "slow-paced", "pacing"),
    Aspect("color", "colorful", "muted", "colors"),
    Aspect("style", "minimalist", "ornate", "design"),
    Aspect("comfort", "soft", "firm", "feel"),
    Aspect("length", "short", "long", "length"),
    Aspect("humor", "funny", "serious", "humor"),
    Aspect("warmth", "insulated", "breathable", "warmth"),
    Aspect("size", "compact", "oversized", "size"),
    Aspect("materials", "organic", "synthetic", "materials"),
    Aspect("era", "retro", "modern", "look"),
    Aspect("tech", "smart", "analog", "technology"),
    Aspect("finish", "glossy", "matte", "finish"),
    Aspect("heat", "spicy", "mild", "heat"),
    Aspect("texture", "crunchy", "smooth", "texture"),
    Aspect("craft", "handmade", "mass-produced", "craftsmanship"),
    Aspect("energy", "energizing", "calming", "mood"),
)

CATEGORIES: tuple[Category, ...] = (
    Category("hiking gear", ("tent", "backpack", "sleeping bag", "trekking pole set", "headlamp", "camp stove"),
             ("for weekend trips", "for long-distance trails", "for alpine camps", "for day hikes"),
             ("weight", "durability", "warmth", "size", "color"),
             ("Made from trail-tested materials.", "Comes with a storage sack and a repair kit.",
              "A dependable companion in the backcountry.")),
    Category("fragrances", ("eau de parfum", "cologne", "body mist", "perfume oil"),
             ("for evenings out", "for everyday wear", "for special occasions"),
             ("scent", "intensity", "era", "materials", "energy"),
             ("Notes of cedar, bergamot and amber.", "Comes in a refillable glass bottle.",
              "Lasts from morning until late evening.")),
    Category("novels", ("novel", "thriller", "short story collection", "memoir", "mystery"),
             ("for a rainy weekend", "for the beach", "for book clubs", "for long train rides"),
             ("tone", "pace", "length", "complexity", "humor"),
             ("Told through the eyes of two sisters.", "Set in a small harbor town.",
              "The debut of a much-discussed new voice.")),
    Category("headphones", ("over-ear headphone", "earbud set", "gaming headset", "studio headphone"),
             ("for commuting", "for the studio", "for long flights", "for the gym"),
             ("noise", "weight", "tech", "comfort", "style"),
             ("Pairs with phones and laptops in seconds.", "The battery lasts a full working week.",
              "Ships with a carrying case and two cables.")),
    Category("coffee", ("espresso blend", "single-origin roast", "cold brew concentrate", "decaf roast"),
             ("for slow mornings", "for the office", "for espresso machines", "for pour-over brewing"),
             ("sweetness", "intensity", "materials", "craft", "energy"),
             ("Roasted in small batches.", "Sourced from high-altitude farms.",
              "Ground to order or sold as whole beans.")),
    Category("board games", ("board game", "card game", "party game", "cooperative game"),
             ("for game night", "for two players", "for family gatherings", "for big groups"),
             ("complexity", "length", "humor", "pace", "color"),
             ("Plays in about an hour.", "Includes a quick-start rulebook.",
              "Every round plays out differently.")),
    Category("skincare", ("moisturizer", "serum", "cleanser", "sunscreen", "face mask"),
             ("for daily routines", "for sensitive skin", "for dry winters"),
             ("scent", "materials", "intensity", "finish", "comfort"),
             ("Dermatologist tested.", "Comes in a recyclable pump bottle.", "Absorbs within a minute.")),
    Category("films", ("film", "documentary", "drama", "comedy", "animated feature"),
             ("for movie night", "for a quiet evening", "for the whole family"),
             ("tone", "pace", "length", "humor", "era"),
             ("Shot on location over three summers.", "Features a memorable score.",
              "An ensemble cast carries the story.")),
    Category("running shoes", ("running shoe", "trail shoe", "racing flat", "recovery sandal"),
             ("for marathon training", "for muddy trails", "for easy miles"),
             ("weight", "comfort", "durability", "color", "warmth"),
             ("The outsole grips on wet roads.", "Available in wide sizes.", "Tested over hundreds of miles.")),
    Category("candles", ("candle", "wax melt set", "reed diffuser", "tealight pack"),
             ("for cozy nights", "for the living room", "for gifting"),
             ("scent", "color", "materials", "size", "energy"),
             ("Poured by hand in small batches.", "Burns cleanly for about forty hours.",
              "Comes in a reusable jar.")),
    Category("video games", ("video game", "puzzle game", "role-playing game", "racing game"),
             ("for long weekends", "for couch co-op", "for short sessions"),
             ("pace", "complexity", "tone", "humor", "color"),
             ("Supports online and local play.", "Includes dozens of hours of content.",
              "Runs smoothly on older hardware.")),
    Category("jackets", ("rain jacket", "down jacket", "fleece", "windbreaker"),
             ("for city commutes", "for winter hikes", "for travel"),
             ("warmth", "weight", "color", "style", "durability"),
             ("Has two zippered hand pockets.", "Packs into its own pocket.", "Machine washable.")),
    Category("snacks", ("trail mix", "chip bag", "granola bar box", "cookie tin"),
             ("for road trips", "for the office", "for movie night"),
             ("sweetness", "heat", "texture", "materials", "size"),
             ("Made without artificial colors.", "Packed in resealable bags.", "A family recipe.")),
    Category("music albums", ("album", "live record", "EP", "soundtrack"),
             ("for late-night listening", "for workouts", "for road trips"),
             ("tone", "pace", "intensity", "era", "energy"),
             ("Recorded live in a single take.", "Features guest vocalists on three tracks.",
              "Remastered from the original tapes.")),
    Category("lamps", ("desk lamp", "floor lamp", "pendant light", "bedside lamp"),
             ("for reading corners", "for home offices", "for bedrooms"),
             ("color", "style", "tech", "size", "finish"),
             ("Takes standard bulbs.", "Has a dimmer on the cord.", "Assembles in minutes.")),
    Category("watches", ("wristwatch", "dive watch", "field watch", "smartwatch"),
             ("for daily wear", "for formal events", "for outdoor adventures"),
             ("tech", "style", "finish", "size", "era"),
             ("Water resistant to fifty meters.", "Comes with an interchangeable strap.",
              "Backed by a two-year warranty.")),
    Category("toys", ("building set", "plush toy", "jigsaw puzzle", "toy car"),
             ("for toddlers", "for curious kids", "for rainy afternoons"),
             ("color", "noise", "durability", "complexity", "materials"),
             ("Safety tested for young children.", "Fits in a small backpack.", "Makes a great gift.")),
    Category("hot sauces", ("hot sauce", "chili crisp", "salsa", "marinade"),
             ("for tacos", "for weeknight dinners", "for grilling"),
             ("heat", "sweetness", "intensity", "materials", "craft"),
             ("Made with fermented peppers.", "Keeps for months in the fridge.", "A small-batch recipe.")),
    Category("furniture", ("armchair", "sofa", "bookshelf", "coffee table"),
             ("for small apartments", "for family rooms", "for reading nooks"),
             ("comfort", "style", "size", "craft", "finish"),
             ("Ships flat-packed with tools included.", "Made from sustainably sourced wood.",
              "Available in three colors.")),
    Category("bicycles", ("road bike", "commuter bike", "mountain bike", "folding bike"),
             ("for city streets", "for weekend rides", "for mountain trails"),
             ("weight", "tech", "durability", "era", "color"),
             ("Comes with fenders and a rear rack.", "Frame sizes for most riders.", "Tuned before shipping.")),
    Category("podcasts", ("podcast", "interview series", "audio drama", "news show"),
             ("for commutes", "for long walks", "for falling asleep"),
             ("tone", "length", "humor", "pace", "energy"),
             ("New episodes every week.", "Hosted by two longtime friends.", "Over a hundred episodes so far.")),
    Category("teas", ("green tea", "herbal infusion", "black tea", "oolong"),
             ("for quiet afternoons", "for bedtime", "for cold days"),
             ("sweetness", "intensity", "scent", "materials", "energy"),
             ("Loose leaf in a tin.", "Harvested in early spring.", "Steeps well more than once.")),
    Category("houseplants", ("houseplant", "succulent", "hanging fern", "bonsai"),
             ("for sunny windowsills", "for low-light rooms", "for beginners"),
             ("size", "color", "scent", "complexity", "finish"),
             ("Ships in a ceramic pot.", "Arrives with care instructions.", "Grows slowly and steadily.")),
    Category("kitchenware", ("chef's knife", "cast iron skillet", "stockpot", "cutting board"),
             ("for home cooks", "for busy weeknights", "for serious bakers"),
             ("weight", "durability", "finish", "style", "craft"),
             ("Dishwasher safe.", "Backed by a lifetime warranty.", "Works on every kind of stove.")),
)

# Title pieces for made-up product names.
NAME_STARTS = ("Al", "Bel", "Cor", "Dun", "El", "Fen", "Gal", "Har", "Is", "Jun", "Kel", "Lor", "Mar",
               "Nor", "Or", "Pel", "Quin", "Ros", "Sol", "Tar", "Ul", "Ver", "Wil", "Yar", "Zen")
NAME_MIDDLES = ("a", "e", "i", "o", "ri", "la", "ven", "do", "mi", "tha")
NAME_ENDS = ("ra", "ton", "vik", "dell", "mont", "sa", "wyn", "ix", "ford", "ela")

TITLE_TEMPLATES = (
    "{Name} {Adj} {Noun}",
    "The {Name} {Noun}",
    "{Adj} {Noun} by {Name}",
    "{Name} {Noun}: {Adj} Edition",
    "{Name} {Noun}",
)
OPENING_TEMPLATES = (
    "{a_adj1} {noun} {context}.",
    "{title} is {a_adj1} {noun} {context}.",
    "Meet {a_adj1} {noun}, made {context}.",
    "{A_adj1} {noun} built {context}.",
)
TWO_ASPECT_TEMPLATES = (
    "It is {adj2} and {adj3}.",
    "Expect something {adj2} and {adj3}.",
    "People describe it as {adj2}, even {adj3}.",
    "{Adj2} by design, and {adj3} too.",
)
ONE_ASPECT_TEMPLATES = (
    "It is also {adj2}.",
    "Expect something {adj2}.",
    "People describe it as {adj2}.",
)

REVIEW_POSITIVE = (
    "I love that this {noun} is so {adj}.",
    "Really {adj}, exactly what I was after.",
    "The {feature} is perfect: {adj} in the best way.",
    "Happy to find {a_noun} this {adj}.",
    "{Adj} and I am here for it.",
)
REVIEW_NEGATIVE = (
    "Far too {adj} for my taste.",
    "I did not like how {adj} it is.",
    "The {feature} put me off; it is just too {adj}.",
    "I wish this {noun} were less {adj}.",
    "Way more {adj} than I wanted.",
)
# Closing sentence of a review, by star rating 1..5.
REVIEW_OVERALL = (
    ("Would not buy this again.", "A real disappointment.", "I returned it after a week."),
    ("Not really for me.", "It did not live up to the description.", "I expected more."),
    ("It is okay, nothing special.", "Fine, but I would not rave about it.", "Mixed feelings overall."),
    ("A good {noun} overall.", "I would recommend it.", "Solid and worth a look."),
    ("One of my favorite {category} ever.", "Absolutely worth it.", "I keep coming back to it."),
)

PREFERENCE_LIKE = ("looks for {adj} {category}", "prefers {adj} {category}", "is drawn to {adj} {category}",
                   "enjoys {adj} {category}", "is searching for {adj} {category}")
PREFERENCE_DISLIKE = ("avoids {adj} {category}", "dislikes {adj} {category}", "stays away from {adj} {category}",
                      "has no patience for {adj} {category}", "is put off by {adj} {category}")
CATEGORY_LIKE = ("loves {category}", "is a big fan of {category}", "keeps coming back to {category}")
CATEGORY_DISLIKE = ("has little interest in {category}", "rarely enjoys {category}", "usually skips {category}")


def article(word: str) -> str:
    """'a' or 'an' for the word that follows (by its first letter; good enough for this vocabulary)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def title_case(text: str) -> str:
    """Capitalize each word and hyphenated part ("Slow-Paced") without str.title's "Chef'S" and "Ep"."""
    return " ".join("-".join(p if p.isupper() else capitalize(p) for p in w.split("-")) for w in text.split(" "))
