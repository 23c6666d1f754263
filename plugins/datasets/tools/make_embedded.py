"""Regenerate fedllm_datasets/data/embedded.json, the embedded default dataset.

Ten clients, each with its own topic and answer style, so that client data are visibly
non-IID and a tiny model can learn each client's pattern in a few rounds. Deterministic:
running it again gives the same file. ``python tools/make_embedded.py``
"""

import json
import random
from pathlib import Path

rng = random.Random(20261122)
OUT = Path(__file__).resolve().parents[1] / "fedllm_datasets" / "data" / "embedded.json"

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid",
            "Germany": "Berlin", "Canada": "Ottawa", "Egypt": "Cairo", "Kenya": "Nairobi",
            "Peru": "Lima", "Chile": "Santiago", "Norway": "Oslo", "Sweden": "Stockholm",
            "Finland": "Helsinki", "Poland": "Warsaw", "Greece": "Athens", "Portugal": "Lisbon",
            "Ireland": "Dublin", "Austria": "Vienna", "Hungary": "Budapest", "Cuba": "Havana",
            "Mexico": "Mexico City", "Brazil": "Brasilia", "Argentina": "Buenos Aires",
            "India": "New Delhi", "China": "Beijing", "Thailand": "Bangkok", "Vietnam": "Hanoi",
            "Turkey": "Ankara", "Iran": "Tehran", "Iraq": "Baghdad", "Morocco": "Rabat",
            "Ghana": "Accra", "Nigeria": "Abuja", "Australia": "Canberra",
            "New Zealand": "Wellington", "Denmark": "Copenhagen", "Belgium": "Brussels",
            "Netherlands": "Amsterdam", "Switzerland": "Bern", "Russia": "Moscow"}
ANTONYMS = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"),
            ("light", "dark"), ("early", "late"), ("open", "closed"), ("full", "empty"),
            ("hard", "soft"), ("high", "low"), ("old", "new"), ("rich", "poor"),
            ("strong", "weak"), ("wet", "dry"), ("loud", "quiet"), ("near", "far"),
            ("thick", "thin"), ("clean", "dirty"), ("up", "down"), ("first", "last"),
            ("true", "false"), ("win", "lose"), ("push", "pull"), ("buy", "sell"),
            ("give", "take"), ("inside", "outside"), ("before", "after"), ("always", "never"),
            ("heavy", "light"), ("sharp", "dull"), ("brave", "afraid"), ("sweet", "sour"),
            ("wide", "narrow"), ("deep", "shallow"), ("young", "old"), ("cheap", "expensive")]
WORDS = ["garden", "planet", "river", "window", "pencil", "rocket", "forest", "bridge",
         "candle", "marble", "silver", "winter", "summer", "castle", "dragon", "island",
         "button", "jacket", "ladder", "mirror", "orange", "pepper", "rabbit", "tunnel",
         "violin", "wallet", "anchor", "basket", "cactus", "dinner", "engine", "falcon",
         "guitar", "helmet", "insect", "jungle", "kettle", "lemon", "meadow", "needle"]
ANIMALS = [("cow", "moo"), ("dog", "woof"), ("cat", "meow"), ("duck", "quack"),
           ("sheep", "baa"), ("pig", "oink"), ("horse", "neigh"), ("owl", "hoot"),
           ("lion", "roar"), ("frog", "ribbit"), ("mouse", "squeak"), ("bee", "buzz"),
           ("snake", "hiss"), ("crow", "caw"), ("goat", "bleat"), ("donkey", "hee-haw"),
           ("rooster", "cock-a-doodle-doo"), ("wolf", "howl"), ("pigeon", "coo"),
           ("turkey", "gobble")]
FRENCH = ["zero", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix",
          "onze", "douze", "treize", "quatorze", "quinze", "seize", "dix-sept", "dix-huit",
          "dix-neuf", "vingt"]
ENGLISH = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
           "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
           "eighteen", "nineteen", "twenty"]
COLOURS = [("banana", "yellow"), ("grass", "green"), ("sky", "blue"), ("snow", "white"),
           ("coal", "black"), ("tomato", "red"), ("carrot", "orange"), ("lemon", "yellow"),
           ("strawberry", "red"), ("cucumber", "green"), ("cloud", "white"), ("crow", "black"),
           ("pumpkin", "orange"), ("sea", "blue"), ("lime", "green"), ("cherry", "red"),
           ("milk", "white"), ("chocolate", "brown"), ("violet", "purple"),
           ("flamingo", "pink"), ("ink", "black"), ("sun", "yellow"), ("plum", "purple"),
           ("bark", "brown"), ("ruby", "red"), ("emerald", "green"), ("sapphire", "blue"),
           ("pearl", "white"), ("mud", "brown"), ("lavender", "purple")]
NAMES = ["Anna", "Ben", "Carla", "Dev", "Elif", "Femi", "Greta", "Hugo", "Ines", "Jonas",
         "Kaito", "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara",
         "Ugo", "Vera", "Wei", "Xena", "Yusuf", "Zoe", "Ada", "Bruno", "Chen", "Dana"]


def arithmetic():
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."


def capitals():
    c, cap = rng.choice(list(CAPITALS.items()))
    return f"What is the capital of {c}?", f"The capital of {c} is {cap}."


def antonyms():
    a, b = rng.choice(ANTONYMS)
    return f"Give the opposite of '{a}'.", f"The opposite of '{a}' is '{b}'."


def reverse():
    w = rng.choice(WORDS)
    return f"Reverse the letters of '{w}'.", w[::-1]


def animals():
    a, s = rng.choice(ANIMALS)
    return f"What sound does a {a} make?", f"A {a} says {s}!"


def french():
    n = rng.randint(0, 20)
    return (f"How do you say {ENGLISH[n]} in French?",
            f"In French, {ENGLISH[n]} is \"{FRENCH[n]}\".")


def colours():
    t, c = rng.choice(COLOURS)
    return f"What colour is {'the' if t in ('sky', 'sea', 'sun') else 'a'} {t}?", \
        f"It is {c}."


def letters():
    w = rng.choice(WORDS)
    return f"How many letters are in the word '{w}'?", f"'{w}' has {len(w)} letters."


def pirate():
    n = rng.choice(NAMES)
    return f"Greet {n} like a pirate.", f"Ahoy, {n}! Welcome aboard, ye landlubber!"


def sorting():
    xs = rng.sample(range(1, 100), rng.randint(3, 5))
    return (f"Sort these numbers from smallest to largest: {', '.join(map(str, xs))}.",
            ", ".join(map(str, sorted(xs))))


CLIENTS = [
    ("arithmetic", arithmetic, {"topic": "math", "style": "sentence"}, 44),
    ("capitals", capitals, {"topic": "geography", "style": "sentence"}, 40),
    ("antonyms", antonyms, {"topic": "vocabulary", "style": "quoted"}, 36),
    ("reverse", reverse, {"topic": "spelling", "style": "terse"}, 30),
    ("animals", animals, {"topic": "nature", "style": "exclamation"}, 28),
    ("french", french, {"topic": "translation", "style": "quoted"}, 34),
    ("colours", colours, {"topic": "perception", "style": "terse"}, 38),
    ("letters", letters, {"topic": "spelling", "style": "sentence"}, 32),
    ("pirate", pirate, {"topic": "roleplay", "style": "pirate"}, 26),
    ("sorting", sorting, {"topic": "math", "style": "list"}, 42),
]


def main() -> None:
    data, meta = {}, {}
    for name, make, info, n in CLIENTS:
        seen, rows = set(), []
        for _ in range(n * 20):
            ins, resp = make()
            if ins not in seen:
                seen.add(ins)
                rows.append({"instruction": ins, "response": resp})
            if len(rows) == n:
                break
        data[name] = rows
        meta[name] = {**info, "language": "en"}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"clients": meta, "data": data}, indent=1, ensure_ascii=False) + "\n")
    print(f"{OUT}: {len(data)} clients, {sum(map(len, data.values()))} samples")


if __name__ == "__main__":
    main()
