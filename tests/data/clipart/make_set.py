"""Builds the held-out drawing set used by bench/drawings.py (deterministic; the committed images and truth.json
are its output) from Debian's openclipart-png package (Open Clip Art Library 0.18, public domain: "creative commons
Public Domain Dedication", /usr/share/doc/openclipart-png/copyright). Real drawings by many authors, none of which
the local provider's rules were designed on (tests/data/quality's drawings are Pillow renders made there).

    apt-get install openclipart-png
    python tests/data/clipart/make_set.py            # rebuild images/ and truth.json
    python tests/data/clipart/make_set.py --list     # the candidates in sample order, before the look check

The sample is chosen by a fixed rule, not by hand: every PNG of the FOLDERS below gets a subject from its file name
(the longest KEYWORDS entry that begins a word of the name; else the folder's own subject when the folder names
one; else it is no candidate); black-and-white copies of a colour file ("_bw") are left out. Per subject the files
are shuffled with SEED; the candidates are the first of each subject (subjects in a seeded order), then the second
of each, up to CANDIDATES (with more than 100 subjects found: one drawing of each of 100 subjects). Each candidate was then looked at once, before any provider output was seen, and the ones in DROPPED
(the picture is not what the name says, a scene, a symbol or text) left out. The truth's subject words are the
subject's name, its plurals and synonyms and the kinds of it (SUBJECTS: an alt text naming any of them names the
subject); `split` is "fit" or "held-out" by a CRC-32 of the source path (bench/drawings.py: fit rules on "fit"
only). Images are flattened on white (their alpha) and made <= EDGE px (long edge); names are neutral (`oc_<hash>`)
so no stage can read the subject from them.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import zlib
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
OUT = HERE / "images"
SRC = Path("/usr/share/openclipart/png")
Image.MAX_IMAGE_PIXELS = None  # one package PNG is 168 Mpx: our own trusted input, made small below
SEED = 15
CANDIDATES = 100
EDGE = 448
"""long edge in px (<= 512 as tests/data/quality; 448 keeps the set under 3 MB)"""

BIRD = ["bird"]
INSECT = ["insect", "bug"]
FRUIT = ["fruit"]
SUBJECTS: dict[str, list[str]] = {
    # animals
    "dog": ["dog", "puppy", "hound", "terrier", "poodle", "spaniel", "retriever", "beagle", "bulldog", "collie",
            "dachshund", "sheepdog", "chihuahua", "pug", "dalmatian"],
    "cat": ["cat", "kitten", "kitty", "tabby", "siamese", "persian cat", "tomcat"],
    "horse": ["horse", "pony", "foal", "stallion", "mare", "sorrel", "mustang"],
    "bear": ["bear", "grizzly", "polar bear", "brown bear"],
    "big cat": ["lion", "lioness", "tiger", "leopard", "cheetah", "jaguar", "panther", "cougar", "lynx", "big cat"],
    "bird": BIRD + ["eagle", "owl", "parrot", "duck", "swan", "goose", "hen", "chicken", "rooster", "penguin",
                    "pelican", "flamingo", "peacock", "stork", "crane", "heron", "robin", "sparrow", "finch",
                    "toucan", "vulture", "hawk", "gull", "seagull", "ostrich", "pigeon", "dove", "jay", "magpie",
                    "kingfisher", "woodpecker", "hornbill", "macaw", "cockatoo", "lorikeet", "goldfinch"],
    "owl": ["owl", "great grey owl"] + BIRD,
    "duck": ["duck", "drake", "duckling", "mallard"] + BIRD,
    "swan": ["swan", "black swan"] + BIRD,
    "penguin": ["penguin", "king penguin"] + BIRD,
    "eagle": ["eagle", "bald eagle", "hawk"] + BIRD,
    "parrot": ["parrot", "macaw", "cockatoo", "lorikeet", "parakeet"] + BIRD,
    "chicken": ["chicken", "hen", "rooster", "cock", "chick"] + BIRD,
    "fish": ["fish", "goldfish", "shark", "trout", "salmon", "carp", "tuna", "eel", "ray", "stingray", "tench",
             "barracouta", "puffer", "clownfish", "anemone fish", "lionfish", "gar", "sturgeon", "coho"],
    "insect": INSECT + ["bee", "butterfly", "ladybug", "ladybird", "ant", "fly", "wasp", "dragonfly", "damselfly",
                        "grasshopper", "cricket", "mantis", "beetle", "mosquito", "moth", "cockroach", "cicada"],
    "butterfly": ["butterfly", "moth", "monarch", "admiral", "ringlet", "cabbage butterfly"] + INSECT,
    "bee": ["bee", "honeybee", "bumblebee"] + INSECT,
    "ladybug": ["ladybug", "ladybird", "beetle"] + INSECT,
    "ant": ["ant", "emmet"] + INSECT,
    "dragonfly": ["dragonfly", "damselfly"] + INSECT,
    "wasp": ["wasp", "hornet"] + INSECT,
    "fly": ["fly", "housefly"] + INSECT,
    "grasshopper": ["grasshopper", "cricket", "locust"] + INSECT,
    "mantis": ["mantis", "praying mantis"] + INSECT,
    "spider": ["spider", "tarantula", "black widow", "garden spider"],
    "caterpillar": ["caterpillar", "larva"],
    "frog": ["frog", "toad", "tree frog", "bullfrog"],
    # food
    "apple": ["apple", "granny smith"] + FRUIT,
    "banana": ["banana"] + FRUIT,
    "cherry": ["cherry", "cherries"] + FRUIT,
    "grapes": ["grape", "grapes", "bunch of grapes"] + FRUIT,
    "pear": ["pear"] + FRUIT,
    "lemon": ["lemon", "citrus"] + FRUIT,
    "lime": ["lime", "citrus"] + FRUIT,
    "strawberry": ["strawberry", "strawberries"] + FRUIT,
    "watermelon": ["watermelon", "melon"] + FRUIT,
    "pineapple": ["pineapple", "ananas"] + FRUIT,
    "peach": ["peach", "nectarine"] + FRUIT,
    "corn": ["corn", "maize", "ear", "corncob", "cob"],
    "pepper": ["pepper", "chili", "chilli", "bell pepper", "paprika", "cayenne", "jalapeno"],
    "onion": ["onion"],
    "mushroom": ["mushroom", "agaric", "toadstool", "champignon", "bolete"],
    "cake": ["cake", "cupcake", "gateau", "birthday cake"],
    "pie": ["pie", "tart", "pastry"],
    "bread": ["bread", "loaf", "baguette", "french loaf", "bagel", "roll"],
    "pretzel": ["pretzel"],
    "pizza": ["pizza"],
    "ice cream": ["ice cream", "ice lolly", "cone", "sundae", "gelato"],
    "cookie": ["cookie", "biscuit"],
    "donut": ["donut", "doughnut"],
    "cup": ["cup", "mug", "teacup", "coffee", "coffee mug", "tea", "espresso", "cappuccino"],
    "teapot": ["teapot", "kettle", "tea pot"],
    "glass": ["glass", "tumbler", "beer glass", "drink", "goblet"],
    "bottle": ["bottle", "water bottle", "wine bottle", "beer bottle", "pop bottle"],
    "can": ["can", "tin", "soda can", "beer can"],
    # things
    "house": ["house", "home", "cottage", "building", "cabin", "hut", "villa", "bungalow", "mansion", "boathouse"],
    "table": ["table", "dining table", "desk"],
    "couch": ["couch", "sofa", "settee", "studio couch"],
    "chair": ["chair", "armchair", "seat", "rocking chair", "folding chair", "throne"],
    "television": ["television", "tv", "television set", "monitor", "screen"],
    "barrel": ["barrel", "cask", "keg"],
    "light bulb": ["light bulb", "lightbulb", "bulb", "lamp"],
    "battery": ["battery", "batteries", "cell"],
    "telephone": ["telephone", "phone", "cellphone", "cell phone", "mobile phone", "smartphone", "dial telephone",
                  "handset", "cellular telephone", "pay-phone"],
    "hat": ["hat", "cap", "cowboy hat", "sombrero", "bonnet", "beanie", "top hat", "bowler", "helmet", "fedora"],
    "flower": ["flower", "rose", "daisy", "tulip", "sunflower", "lily", "blossom", "bloom", "bouquet", "orchid",
               "poppy", "petals", "lady's slipper"],
    "tree": ["tree", "pine", "fir", "palm", "oak", "conifer", "christmas tree", "spruce", "maple", "willow"],
    "guitar": ["guitar", "acoustic guitar", "electric guitar", "bass guitar", "bass"],
    "violin": ["violin", "fiddle"],
    "cello": ["cello", "violoncello", "double bass"],
    "trumpet": ["trumpet", "cornet", "horn", "bugle"],
    "french horn": ["french horn", "horn"],
    "trombone": ["trombone"],
    "saxophone": ["saxophone", "sax"],
    "flute": ["flute", "recorder", "piccolo"],
    "oboe": ["oboe"],
    "piano": ["piano", "grand piano", "upright piano", "upright"],
    "drum": ["drum", "drums", "bongo", "tom-tom", "drumkit"],
    "harp": ["harp", "lyre"],
    "xylophone": ["xylophone", "marimba"],
    "maracas": ["maracas", "maraca", "rattle"],
    "headphones": ["headphones", "headphone", "headset", "earphones"],
    "gramophone": ["gramophone", "phonograph", "record player"],
    "jukebox": ["jukebox"],
    "teddy bear": ["teddy bear", "teddy", "toy bear"],
    "rubber duck": ["rubber duck", "duck", "toy duck"],
    "cube": ["rubik's cube", "cube", "puzzle"],
    "robot": ["robot", "android"],
    "boomerang": ["boomerang"],
    "ball": ["ball", "soccer ball", "football", "beach ball"],
    "baseball": ["baseball", "ball"],
    "baseball bat": ["baseball bat", "bat"],
    "baseball glove": ["baseball glove", "glove", "mitt"],
    "racket": ["racket", "racquet", "tennis racket", "badminton racket", "paddle"],
    "surfboard": ["surfboard", "surf board", "board"],
    "dartboard": ["dartboard", "dart board", "target", "bullseye"],
    "shoe": ["shoe", "shoes", "sneaker", "running shoe", "trainer"],
    "hammer": ["hammer", "mallet", "sledgehammer"],
    "axe": ["axe", "ax", "hatchet"],
    "broom": ["broom", "besom"],
    "bucket": ["bucket", "pail"],
    "drill": ["drill", "power drill"],
    "key": ["key", "keys"],
    "lock": ["lock", "padlock"],
    "magnifying glass": ["magnifying glass", "magnifier", "loupe", "lens"],
    "paint brush": ["paint brush", "paintbrush", "brush"],
    "paint roller": ["paint roller", "roller"],
    "pencil": ["pencil", "crayon"],
    "shovel": ["shovel", "spade"],
    "saw": ["saw", "handsaw", "hacksaw"],
    "scissors": ["scissors", "shears"],
    "screwdriver": ["screwdriver"],
    "wrench": ["wrench", "spanner"],
    "vacuum cleaner": ["vacuum cleaner", "vacuum", "hoover"],
    "compass": ["compass"],
    "camera": ["camera", "digital camera", "reflex camera"],
    "lamp": ["lamp", "lantern", "oil lamp"],
    "clock": ["clock", "wall clock", "alarm clock", "watch", "stopwatch", "timer", "clock face"],
    "book": ["book", "notebook", "textbook", "novel", "bible"],
    "computer": ["computer", "desktop computer", "pc", "workstation", "monitor", "screen"],
    "keyboard": ["keyboard", "computer keyboard", "typewriter keyboard"],
    "laptop": ["laptop", "notebook computer", "notebook"],
    "mouse (computer)": ["mouse", "computer mouse"],
    "printer": ["printer", "laser printer"],
    "monitor": ["monitor", "screen", "display", "lcd", "television", "tv"],
    "joystick": ["joystick", "game controller", "controller"],
    "box": ["box", "carton", "cardboard box", "crate", "package", "parcel"],
    "bag": ["bag", "paper bag", "shopping bag", "sack"],
    "suitcase": ["suitcase", "luggage", "bag", "baggage"],
    "basket": ["basket", "hamper"],
    # vehicles
    "car": ["car", "automobile", "sedan", "convertible", "sports car", "jeep", "cab", "taxi", "limousine",
            "station wagon", "race car", "minivan", "hummer", "suv", "coupe"],
    "truck": ["truck", "lorry", "pickup", "trailer truck", "fire engine", "van", "tow truck", "moving van"],
    "bus": ["bus", "coach", "minibus", "trolleybus", "school bus"],
    "bicycle": ["bicycle", "bike", "cycle", "mountain bike"],
    "airplane": ["airplane", "aeroplane", "plane", "aircraft", "airliner", "jet", "warplane", "military plane"],
    "tank": ["tank", "armoured vehicle"],
    "tractor": ["tractor"],
    "ambulance": ["ambulance"],
    "boat": ["boat", "ship", "sailboat", "yacht", "canoe", "kayak", "schooner", "catamaran", "trimaran", "liner",
             "ferry", "vessel", "trawler", "tugboat", "steamer", "gondola", "lifeboat", "sailing ship"],
    "lighthouse": ["lighthouse", "beacon", "tower"],
}
"""subject -> the words an alt text naming it may use (any one; bench/drawings.py matches them with an optional
plural s/es): the name, synonyms, kinds of it and, for an animal or a fruit, the everyday class above it ("bird",
"insect", "fruit")"""

KEYWORDS: dict[str, str] = {
    # file-name word -> subject (English, plus the Italian/French words several authors use in the names)
    "dog_": "dog", "puppy": "dog", "cat_": "cat", "kitten": "cat", "horse_": "horse", "pony_": "horse",
    "bear_": "bear", "lion_": "big cat", "tiger": "big cat", "leopard": "big cat", "cheetah": "big cat",
    "owl_": "owl", "gufo": "owl", "duck_": "duck", "anatra": "duck", "papera": "duck", "swan_": "swan",
    "cigno": "swan", "penguin": "penguin", "pinguino": "penguin", "eagle": "eagle", "aquila": "eagle",
    "acquila": "eagle", "parrot": "parrot", "pappagallo": "parrot", "chicken": "chicken", "hen_": "chicken",
    "rooster": "chicken", "gallina": "chicken", "gallo_": "chicken", "fish": "fish", "pesce": "fish",
    "shark": "fish", "squalo": "fish", "butterfly": "butterfly", "farfalla": "butterfly", "bee_": "bee",
    "abeille": "bee", "ape_": "bee", "ladybug": "ladybug", "coccinell": "ladybug", "ant_": "ant",
    "formic": "ant", "dragonfly": "dragonfly", "libellul": "dragonfly", "damselfly": "dragonfly", "wasp": "wasp",
    "fly_": "fly", "grass_hopper": "grasshopper", "grasshopper": "grasshopper", "cavalletta": "grasshopper",
    "mante": "mantis", "mantide": "mantis", "spider": "spider", "ragn": "spider", "caterpillar": "caterpillar",
    "frog": "frog", "rana_": "frog",
    "apple": "apple", "banana": "banana", "cherr": "cherry", "grape": "grapes", "pear_": "pear", "pera_": "pear",
    "lemon": "lemon", "lime_": "lime", "strawberr": "strawberry", "watermelon": "watermelon",
    "pasteque": "watermelon", "melon": "watermelon", "pineapple": "pineapple", "peach": "peach",
    "pesca_": "peach", "corn_cob": "corn", "pannocchia": "corn", "pepper": "pepper", "paprika": "pepper",
    "onion": "onion", "champignon": "mushroom", "mushroom": "mushroom", "fungo": "mushroom", "cake": "cake",
    "pie_": "pie", "bread": "bread", "baguette": "bread", "pretzel": "pretzel", "pizza": "pizza",
    "ice_cream": "ice cream", "icecream": "ice cream", "gelato": "ice cream", "cookie": "cookie",
    "donut": "donut", "doughnut": "donut", "mug_": "cup", "cup_": "cup", "coffee": "cup", "tazza": "cup",
    "kubek": "cup", "teapot": "teapot", "teiera": "teapot", "glass_": "glass", "bottle": "bottle",
    "pop_can": "can", "lattine": "can",
    "house": "house", "home_": "house", "casa_": "house", "cottage": "house", "table": "table",
    "tavolo": "table", "couch": "couch", "sofa": "couch", "chair": "chair", "sedia": "chair",
    "poltrona": "chair", "television": "television", "barrel": "barrel", "bulb": "light bulb",
    "lampadina": "light bulb", "battery": "battery", "batteria": "battery", "phone": "telephone",
    "telefono": "telephone", "hat_": "hat", "cappello": "hat", "flower": "flower", "fiore": "flower",
    "rose_": "flower", "rosa_": "flower", "tulip": "flower", "daisy": "flower", "sunflower": "flower",
    "tree_": "tree", "albero": "tree", "pine_": "tree", "palm_": "tree",
    "guitar": "guitar", "violin": "violin", "cello": "cello", "trumpet": "trumpet", "french_horn": "french horn",
    "trombone": "trombone", "saxophone": "saxophone", "flute": "flute", "oboe": "oboe", "piano_": "piano",
    "drum_": "drum", "harp_": "harp", "xylophone": "xylophone", "maracas": "maracas", "headphones": "headphones",
    "gramophone": "gramophone", "jukebox": "jukebox", "teddy": "teddy bear", "rubber_duck": "rubber duck",
    "rubik": "cube", "robot": "robot", "boomerang": "boomerang", "soccer_ball": "ball", "beach_ball": "ball",
    "beachball": "ball", "football_ball": "ball", "baseball_anthony": "baseball", "baseball_bat": "baseball bat",
    "baseball_glove": "baseball glove", "racket": "racket", "racquet": "racket", "surfboard": "surfboard",
    "dartboard": "dartboard", "tennis_shoe": "shoe",
    "hammer": "hammer", "axe_": "axe", "broom": "broom", "bucket": "bucket", "drill": "drill", "key_": "key",
    "chiave": "key", "lock_": "lock", "padlock": "lock", "magnifying": "magnifying glass",
    "magnifing": "magnifying glass", "paint_brush": "paint brush", "paint_roller": "paint roller",
    "brush_roller": "paint roller", "pencil": "pencil", "matita": "pencil", "shovel": "shovel", "saw_": "saw",
    "sega_": "saw", "scissors": "scissors", "forbici": "scissors", "screwdriver": "screwdriver",
    "cacciavite": "screwdriver", "wrench": "wrench", "vacuum": "vacuum cleaner", "compass": "compass",
    "bussola": "compass", "camera": "camera", "lamp_": "lamp", "lantern": "lamp", "clock": "clock",
    "orologio": "clock", "book_": "book", "libro": "book", "keyboard": "keyboard", "laptop": "laptop",
    "mouse": "mouse (computer)", "printer": "printer", "stampante": "printer", "monitor": "monitor",
    "joystick": "joystick", "computer": "computer", "box_": "box", "scatola": "box", "paperbag": "bag",
    "valigi": "suitcase", "suitcase": "suitcase", "cesto": "basket", "basket": "basket",
    "car_": "car", "auto_": "car", "chevrolet": "car", "hummer": "car", "truck": "truck", "camion": "truck",
    "bus1": "bus", "bus2": "bus", "bus_0": "bus", "bicycle": "bicycle", "bicicletta": "bicycle",
    "airplane": "airplane", "aircraft": "airplane", "plane": "airplane", "aereo": "airplane", "tank_": "tank",
    "trattore": "tractor", "tractor": "tractor", "ambulan": "ambulance", "boat": "boat", "barca": "boat",
    "ship_": "boat", "nave_": "boat", "sail_": "boat", "trawler": "boat", "lighthouse": "lighthouse",
    "faro_": "lighthouse",
}

FOLDERS: dict[str, str | None] = {
    # folder (its own PNGs, not its subfolders') -> the subject when the file name names none (None: no default)
    "animals/mammals/dogs": "dog", "animals/mammals/housecats": "cat", "animals/mammals/horses": "horse",
    "animals/mammals/bears": "bear", "animals/mammals/big_cats": "big cat", "animals/birds": "bird",
    "animals/birds/penguin": "penguin", "animals/fish": "fish", "animals/bugs": "insect",
    "animals/amphibian": "frog", "food/fruit": None, "food/vegetables": None, "food/beverages": None,
    "food/breads_and_carbs": None, "food/desserts": None, "buildings/homes": "house",
    "buildings/furniture": None, "electronics/bulb": "light bulb", "electronics/battery": "battery",
    "office/telephone": "telephone", "people/clothing/hats": "hat", "plants/flowers": "flower",
    "plants/trees": "tree", "plants/trees/evergreen": "tree", "recreation/music": None, "recreation/toys": None,
    "recreation/sports": None, "tools": None, "transportation/vehicles": None, "transportation/boating": "boat",
    "signs_and_symbols/clocks": "clock", "education/books": "book", "computer/hardware": None,
    "containers": None,
}

DROPPED: dict[str, str] = {
    # source path -> why it was left out after looking at it (filled in once, before any provider output was seen)
    "recreation/sports/badminton_racket_brice_b_01.png": "nothing shows on white (a light drawing made for a dark ground)",
    "recreation/music/war_drum_enrique_meza_c_01.png": "an emblem of a figure, not a drum",
    "animals/amphibian/2_dead_frogs_lumen_desig_01.png": 'two frog skeletons captioned "2 dead frogs..."',
    "food/vegetables/paprika_mateya_01.png": "an app icon with a barcode and the word PAPRIKA",
    "tools/utensili_chiave_e_cacci_01.png": 'a spanner and a screwdriver ("chiave": spanner), not a key',
    "recreation/toys/rubber_ducks_ganson.png": "a scene: ducks swimming among reeds",
    "buildings/furniture/sedia_e_ombrelloni_archi_01.png": "a scene: two chairs, a table and a parasol",
    "tools/wrench_jarno_vasamaa_01.png": "a socket on a handle, not read as a wrench",
    "tools/bucket_michael_moore_.png": "a small red blob, not recognisable as a bucket",
    "animals/bugs/mostriciattolo_architett_01.png": 'a cartoon spider ("little monster"), not an insect',
    "food/beverages/lemonade.png": "a glass of lemonade (the name says lemonade, not a lemon)",
}


def _matches(keyword: str, name: str) -> bool:
    """`keyword` begins a word of the file name ("coccinell" in "coccinellona_..."); one ending in "_" is a
    whole word, or it with a plural s ("ant_" is not "antelope")."""
    core = keyword.rstrip("_")
    return re.search("_" + re.escape(core) + ("s?_" if keyword.endswith("_") else ""), name) is not None


def subject_of(rel: str) -> str | None:
    """The subject a file's name (else its folder) says, or None."""
    folder, name = rel.rsplit("/", 1)
    low = "_" + re.sub(r"[^a-z]+", "_", name.lower().removesuffix(".png")) + "_"
    hits = [k for k in KEYWORDS if _matches(k, low)]
    if hits:
        return KEYWORDS[max(hits, key=len)]
    return FOLDERS.get(folder)


def candidates() -> list[tuple[str, str]]:
    """(source path relative to SRC, subject), in sample order (see the module docstring)."""
    by_subject: dict[str, list[str]] = {}
    for folder in FOLDERS:
        for path in sorted((SRC / folder).glob("*.png")):
            rel = path.relative_to(SRC).as_posix()
            if path.stem.endswith("_bw") or "_bw_" in path.stem:
                continue
            subject = subject_of(rel)
            if subject:
                by_subject.setdefault(subject, []).append(rel)
    rng = random.Random(SEED)
    for files in by_subject.values():
        rng.shuffle(files)
    order = sorted(by_subject)
    rng.shuffle(order)
    out = []
    for rank in range(max(len(v) for v in by_subject.values())):
        out += [(by_subject[s][rank], s) for s in order if rank < len(by_subject[s])]
    return out[:CANDIDATES]


def split_of(rel: str) -> str:
    return "fit" if zlib.crc32(rel.encode()) % 2 == 0 else "held-out"


def out_name(rel: str) -> str:
    return "oc_" + hashlib.sha1(rel.encode()).hexdigest()[:8] + ".png"


def flat(path: Path) -> Image.Image:
    img = Image.open(path)
    img = img.convert("RGBA")
    bg = Image.new("RGB", img.size, (255, 255, 255))
    bg.paste(img.convert("RGB"), mask=img.getchannel("A"))
    if max(bg.size) > EDGE:
        bg.thumbnail((EDGE, EDGE), Image.Resampling.LANCZOS)
    return bg


def main() -> None:
    picked = candidates()
    if "--list" in sys.argv:
        for i, (rel, subject) in enumerate(picked):
            print(f"{i:3d} {subject:18s} {rel}{'  DROPPED: ' + DROPPED[rel] if rel in DROPPED else ''}")
        return
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    images = {}
    for rel, subject in picked:
        if rel in DROPPED:
            continue
        name = out_name(rel)
        img = flat(SRC / rel)
        img.save(OUT / name, optimize=True)
        images[name] = {"source": rel, "subject_name": subject, "subject": SUBJECTS[subject],
                        "split": split_of(rel)}
    truth = {"about": "Truth for tests/data/clipart/images (make_set.py: Open Clip Art Library drawings from Debian's "
                      "openclipart-png, public domain). Per image: source = path under /usr/share/openclipart/png; "
                      "subject_name = what the drawing shows; subject = words an alt text naming it uses (any "
                      "one); split = fit / held-out (CRC-32 of the source path).",
             "dropped": DROPPED, "images": images}
    (HERE / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"{len(images)} images, {sum(v['split'] == 'fit' for v in images.values())} fit")


if __name__ == "__main__":
    main()
