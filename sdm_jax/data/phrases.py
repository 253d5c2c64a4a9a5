"""Sentence banks of the synthetic Bias in Bios corpus.

Slots filled by the generator: ``{S}`` the subject at the start of a sentence (the person's name
or a capitalised pronoun), ``{s}``/``{o}``/``{p}`` subject, object and possessive pronouns,
``{P}`` a capitalised possessive, ``{city}``, ``{school}`` and ``{years}``. Profession-specific
sentences name the job's own work; group sentences are shared by related professions (clinical:
physician, surgeon, dentist, chiropractor, nurse, dietitian; legal: attorney, paralegal; ...), so
a bio made only of shared and generic sentences is ambiguous and profession accuracy saturates
below 100%. Kinship sentences and gendered-word sentences (``{word}``: one of many gendered
nouns, each rare, so a few hundred bios cannot teach a bag of words what they mean, while a
pretrained encoder already knows) are the only gendered words besides names and pronouns.
"""

from __future__ import annotations

from types import MappingProxyType

GROUP_SENTENCES = MappingProxyType({
    "clinical": (
        "{S} sees patients at a busy practice in {city}.",
        "{S} completed {p} clinical training at {school}.",
        "{S} believes in treating every patient with patience and respect.",
        "{S} is licensed by the state board and keeps up with continuing education.",
        "{S} works closely with other health care providers to coordinate care.",
        "{P} practice accepts most major insurance plans.",
        "{S} has cared for patients of all ages for {years} years.",
    ),
    "wellness": (
        "{S} helps clients build healthy habits that last.",
        "{S} takes a holistic view of health, movement and nutrition.",
        "{S} offers individual sessions as well as small group programs in {city}.",
        "{S} believes that small daily changes lead to lasting wellbeing.",
        "{P} clients range from busy professionals to retirees.",
        "{S} holds several certifications in health and wellness.",
    ),
    "legal": (
        "{S} handles matters in state and federal courts.",
        "{S} works on contract disputes, estate matters and real estate transactions.",
        "{S} joined the firm after graduating from {school}.",
        "{S} has worked on litigation and regulatory matters for {years} years.",
        "{S} prepares filings and manages case documents for the litigation team.",
        "{S} is a member of the {city} bar association's pro bono committee.",
    ),
    "teaching": (
        "{S} has been teaching for {years} years.",
        "{S} enjoys helping students discover what they are capable of.",
        "{S} designs lessons that keep learners curious and engaged.",
        "{S} mentors new instructors and leads workshops on classroom practice.",
        "{P} teaching has been recognised with several awards.",
        "{S} believes every learner deserves patient and clear instruction.",
    ),
    "academic": (
        "{S} received {p} PhD from {school}.",
        "{S} has published more than {years} articles in peer-reviewed journals.",
        "{P} research has been funded by the National Science Foundation.",
        "{S} serves on the editorial board of two academic journals.",
        "{S} supervises graduate students and postdoctoral researchers.",
        "{S} was previously a postdoctoral fellow at {school}.",
        "{P} research interests include cognition, learning and decision making.",
    ),
    "visual_arts": (
        "{P} work has been exhibited in galleries in {city} and abroad.",
        "{S} is drawn to light, colour and texture.",
        "{S} studied fine arts at {school}.",
        "{P} portfolio includes portraits, landscapes and commercial work.",
        "{S} is represented by a gallery in {city}.",
        "{S} finds inspiration in everyday scenes and ordinary people.",
    ),
    "design": (
        "{S} studied design at {school}.",
        "{S} works with clients from the first sketch to the final walkthrough.",
        "{S} has a keen eye for space, proportion and natural light.",
        "{P} projects range from private homes to boutique hotels.",
        "{S} is passionate about sustainable materials and adaptive reuse.",
        "{P} studio is based in {city}.",
    ),
    "music": (
        "{S} has performed at festivals across the country.",
        "{P} music blends soul, electronic and hip hop influences.",
        "{S} released {p} debut album {years} years ago.",
        "{S} has toured with several well-known artists.",
        "{P} tracks have been streamed millions of times.",
        "{S} grew up surrounded by music in {city}.",
    ),
    "stage_screen": (
        "{S} has appeared at festivals and on television.",
        "{P} work has screened at festivals around the world.",
        "{S} is based in {city} and travels often for work.",
        "{S} studied performance at {school}.",
        "{S} has worked with major studios and independent producers.",
        "{S} is represented by an agency in {city}.",
    ),
    "writing": (
        "{P} writing has appeared in The New Yorker and The Atlantic.",
        "{S} studied English literature at {school}.",
        "{S} is working on {p} first book.",
        "{S} has written about culture, politics and everyday life for {years} years.",
        "{P} essays have been widely anthologised.",
        "{S} lives and writes in {city}.",
    ),
    "business": (
        "{S} advises small businesses and nonprofit organisations.",
        "{S} holds an MBA from {school}.",
        "{S} has {years} years of experience in finance and operations.",
        "{S} helps clients plan for growth and manage risk.",
        "{S} previously worked at a large consulting firm in {city}.",
    ),
    "tech": (
        "{S} has {years} years of experience building products at startups in {city}.",
        "{S} holds a degree in computer science from {school}.",
        "{S} is interested in data, automation and the tools people use every day.",
        "{S} enjoys solving hard technical problems with a small team.",
        "{S} has worked on projects ranging from mobile apps to large data systems.",
    ),
    "care": (
        "{S} is known for {p} compassion and calm presence.",
        "{S} supports individuals and families through difficult times.",
        "{S} has volunteered with a crisis line in {city} for {years} years.",
        "{S} believes that listening is the first step toward healing.",
        "{S} works with people facing grief, illness and major life changes.",
    ),
    "faith": (
        "{S} is passionate about building community and serving others.",
        "{S} leads outreach programs for families in {city}.",
        "{S} has served in ministry for {years} years.",
    ),
})  # fmt: skip

PROFESSION_SENTENCES = MappingProxyType({
    "accountant": (("business",), (
        "{S} prepares tax returns and financial statements for individuals and businesses.",
        "{S} is a certified public accountant.",
        "{S} specialises in audits, bookkeeping and payroll.",
        "{S} helps clients with tax planning and IRS correspondence.",
        "{S} manages the general ledger and month-end close for several companies.",
        "{S} has prepared thousands of tax returns during {p} career.",
    )),
    "architect": (("design", "business"), (
        "{S} is a licensed architect and a LEED accredited professional.",
        "{S} designs residential and commercial buildings.",
        "{S} leads projects from schematic design through construction documents.",
        "{P} buildings have won several regional architecture awards.",
        "{S} has designed schools, libraries and housing in {city}.",
        "{S} is a member of the American Institute of Architects.",
    )),
    "attorney": (("legal", "business"), (
        "{S} is a partner at the firm and represents clients in complex litigation.",
        "{S} was admitted to the bar {years} years ago.",
        "{S} earned {p} law degree from {school}.",
        "{S} has tried cases before juries in state and federal court.",
        "{S} represents clients in personal injury, employment and criminal defence matters.",
        "{S} advises corporations on mergers, acquisitions and securities law.",
        "{S} practices family law and estate planning.",
    )),
    "chiropractor": (("clinical", "wellness"), (
        "{S} is a doctor of chiropractic.",
        "{S} treats back pain, neck pain and sports injuries with spinal adjustments.",
        "{S} uses gentle adjustment techniques and soft tissue therapy.",
        "{S} graduated from a chiropractic college and is board certified.",
        "{S} helps patients improve posture and spinal alignment.",
    )),
    "comedian": (("stage_screen", "writing"), (
        "{S} is a stand-up comedian who performs in clubs across the country.",
        "{P} comedy special was released last year.",
        "{S} hosts a weekly comedy podcast.",
        "{S} has opened for some of the biggest names in comedy.",
        "{S} performs improv and sketch comedy in {city}.",
        "{S} has made audiences laugh at comedy festivals from {city} to Montreal.",
    )),
    "composer": (("music", "stage_screen"), (
        "{S} is a composer whose works have been performed by orchestras worldwide.",
        "{S} writes scores for film, television and video games.",
        "{P} compositions include chamber music, choral works and a symphony.",
        "{S} studied composition at a conservatory.",
        "{P} orchestral works have been commissioned by major ensembles.",
        "{S} composed the score for an award-winning documentary.",
    )),
    "dentist": (("clinical",), (
        "{S} is a general dentist who offers cosmetic and restorative dentistry.",
        "{S} earned {p} DDS from {school}.",
        "{S} provides cleanings, fillings, crowns and dental implants.",
        "{S} helps patients feel comfortable in the dental chair.",
        "{S} is a member of the American Dental Association.",
        "{S} has a special interest in orthodontics and oral surgery.",
    )),
    "dietitian": (("wellness", "clinical"), (
        "{S} is a registered dietitian nutritionist.",
        "{S} counsels clients on diabetes, weight management and food allergies.",
        "{S} develops meal plans and nutrition programs for hospitals and schools.",
        "{S} believes food should be both nourishing and enjoyable.",
        "{S} specialises in sports nutrition and eating disorders.",
    )),
    "dj": (("music",), (
        "{S} is a DJ and producer known for high-energy sets.",
        "{S} spins house, techno and disco at clubs around the world.",
        "{S} has held residencies at nightclubs in {city} and Ibiza.",
        "{S} mixes records on vinyl and hosts a weekly radio show.",
        "{S} plays weddings, corporate events and private parties.",
    )),
    "filmmaker": (("stage_screen", "visual_arts"), (
        "{S} is a filmmaker whose documentaries have screened at Sundance.",
        "{S} wrote and directed {p} first feature film {years} years ago.",
        "{S} directs short films, music videos and commercials.",
        "{P} latest documentary follows a family of farmers over a decade.",
        "{S} studied film production at {school}.",
    )),
    "interior_designer": (("design", "visual_arts"), (
        "{S} is an interior designer who creates warm and livable rooms.",
        "{S} selects furniture, fabrics, lighting and finishes for each client.",
        "{S} specialises in kitchen and bath renovations and home staging.",
        "{P} interiors have been featured in home decor magazines.",
        "{S} turns cluttered spaces into calm, functional homes.",
    )),
    "journalist": (("writing",), (
        "{S} is a reporter covering politics and public policy.",
        "{S} has reported from conflict zones for major newspapers.",
        "{S} is a staff writer at a national magazine.",
        "{P} investigative reporting has won several journalism awards.",
        "{S} covers business and technology news for a daily newspaper.",
        "{S} previously worked as an editor at a local newspaper in {city}.",
    )),
    "model": (("stage_screen", "visual_arts"), (
        "{S} is a fashion model signed with a top agency.",
        "{S} has walked the runway at fashion weeks in New York, Paris and Milan.",
        "{S} has appeared in campaigns for major fashion and beauty brands.",
        "{S} has been photographed for the covers of several fashion magazines.",
        "{S} models for print, runway and commercial clients.",
    )),
    "nurse": (("clinical", "care"), (
        "{S} is a registered nurse in the intensive care unit.",
        "{S} has worked as a nurse in emergency, pediatric and oncology units.",
        "{S} earned {p} bachelor of science in nursing from {school}.",
        "{S} is a nurse practitioner providing primary care.",
        "{S} administers medications and monitors patients after surgery.",
        "{S} educates patients and families about managing chronic illness at home.",
    )),
    "painter": (("visual_arts",), (
        "{S} is a painter working in oil and acrylic on canvas.",
        "{P} paintings explore memory, landscape and the human figure.",
        "{S} paints large abstract canvases in {p} studio in {city}.",
        "{P} paintings are held in public and private collections.",
        "{S} works in watercolour and gouache.",
    )),
    "paralegal": (("legal",), (
        "{S} is a certified paralegal supporting attorneys in litigation.",
        "{S} drafts pleadings, discovery requests and legal correspondence.",
        "{S} organises case files and assists attorneys at trial.",
        "{S} completed a paralegal certificate program at {school}.",
        "{S} conducts legal research and summarises depositions.",
    )),
    "pastor": (("faith", "care"), (
        "{S} is the senior pastor of a church in {city}.",
        "{S} preaches on Sundays and leads Bible study groups.",
        "{S} earned a master of divinity from a seminary.",
        "{S} has served the congregation for {years} years.",
        "{S} was ordained as a minister and leads worship services.",
    )),
    "personal_trainer": (("wellness",), (
        "{S} is a certified personal trainer.",
        "{S} designs strength training and conditioning programs for clients.",
        "{S} helps clients lose weight, build muscle and improve fitness.",
        "{S} trains clients at a gym in {city}.",
        "{S} specialises in functional fitness and injury prevention.",
    )),
    "photographer": (("visual_arts",), (
        "{S} is a photographer specialising in weddings and portraits.",
        "{S} shoots editorial, commercial and documentary photography.",
        "{P} photographs have appeared in National Geographic.",
        "{S} has photographed hundreds of weddings.",
        "{S} works with natural light and film cameras.",
        "{S} runs a photography studio in {city}.",
    )),
    "physician": (("clinical",), (
        "{S} is a board-certified internal medicine physician.",
        "{S} completed {p} residency in family medicine.",
        "{S} received {p} medical degree from {school}.",
        "{S} is an internist affiliated with several hospitals.",
        "{S} specialises in cardiology and preventive medicine.",
        "{S} is a pediatrician who cares for children from birth through adolescence.",
        "{S} practices emergency medicine and diagnoses a wide range of illnesses.",
    )),
    "poet": (("writing",), (
        "{S} is a poet whose poems have appeared in Poetry and The Paris Review.",
        "{P} first poetry collection won a national book award.",
        "{S} teaches poetry workshops and gives readings.",
        "{P} poems explore family, migration and the natural world.",
        "{S} has published three collections of poetry.",
    )),
    "professor": (("academic", "teaching"), (
        "{S} is a professor in the department of economics.",
        "{S} is an associate professor of history.",
        "{S} is an assistant professor of biology at {school}.",
        "{S} teaches undergraduate and graduate courses in engineering.",
        "{S} is a professor of sociology and chair of the department.",
        "{S} holds a tenured faculty position at {school}.",
        "{S} teaches courses in mathematics and statistics at the university.",
        "{S} is a professor of political science.",
    )),
    "psychologist": (("care", "academic"), (
        "{S} is a licensed clinical psychologist.",
        "{S} provides psychotherapy for anxiety, depression and trauma.",
        "{S} uses cognitive behavioural therapy with adults and adolescents.",
        "{S} conducts psychological assessments and evaluations.",
        "{S} has a private therapy practice in {city}.",
    )),
    "rapper": (("music",), (
        "{S} is a rapper and songwriter.",
        "{P} latest mixtape features collaborations with several hip hop artists.",
        "{S} started rapping and writing verses as a teenager.",
        "{P} rap lyrics tell stories about growing up in {city}.",
        "{S} signed with a hip hop label after {p} freestyle went viral.",
    )),
    "software_engineer": (("tech",), (
        "{S} is a software engineer who writes code in Python, Java and Go.",
        "{S} builds backend services and distributed systems.",
        "{S} develops web applications and APIs.",
        "{S} is a senior software engineer at a cloud computing company.",
        "{S} contributes to open source software and code reviews.",
        "{S} works on machine learning infrastructure.",
    )),
    "surgeon": (("clinical",), (
        "{S} is a board-certified orthopedic surgeon.",
        "{S} performs minimally invasive and robotic surgery.",
        "{S} completed {p} surgical residency and fellowship at {school}.",
        "{S} specialises in cardiac surgery.",
        "{S} has performed thousands of operations, including joint replacements.",
        "{S} is a general surgeon at a trauma center.",
    )),
    "teacher": (("teaching",), (
        "{S} teaches third grade at an elementary school in {city}.",
        "{S} is a high school English teacher.",
        "{S} teaches middle school math and science.",
        "{S} holds a teaching credential and a master's degree in education.",
        "{S} teaches kindergarten and loves working with young children.",
        "{S} is a special education teacher.",
    )),
    "yoga_teacher": (("wellness", "teaching"), (
        "{S} is a certified yoga teacher.",
        "{S} teaches vinyasa, hatha and restorative yoga classes.",
        "{S} completed a 500-hour yoga teacher training.",
        "{S} leads yoga retreats and meditation workshops.",
        "{S} has practised yoga and mindfulness for {years} years.",
    )),
})  # fmt: skip

GENERIC_SENTENCES: tuple[str, ...] = (
    "{S} lives in {city}.",
    "{S} has more than {years} years of experience.",
    "{S} graduated from {school}.",
    "In {p} free time, {s} enjoys hiking, cooking and travelling.",
    "{S} is fluent in English and Spanish.",
    "{S} loves spending time outdoors.",
    "{S} volunteers with local community organisations.",
    "{S} can be reached through {p} website.",
    "{S} enjoys reading, gardening and running.",
    "{S} is originally from {city}.",
    "{S} is always happy to meet new people.",
    "Outside of work, {s} is an avid cyclist.",
)

# Kinship sentences per gender of the bio's subject; the only gendered words besides names and
# pronouns.
KINSHIP_SENTENCES = MappingProxyType({
    "female": (
        "{S} lives in {city} with {p} husband and two children.",
        "{S} is a proud mother of three.",
        "{S} is a wife, mother and grandmother.",
        "{S} and {p} husband have two daughters.",
        "{S} is the daughter of two teachers.",
    ),
    "male": (
        "{S} lives in {city} with {p} wife and two children.",
        "{S} is a proud father of three.",
        "{S} is a husband, father and grandfather.",
        "{S} and {p} wife have two sons.",
        "{S} is the son of two teachers.",
    ),
})  # fmt: skip

# ``{word}`` slots: neutral frames around one gendered noun.
GENDERED_WORD_SENTENCES: tuple[str, ...] = (
    "{S} is, above all, a devoted {word}.",
    "{S} was once named {word} of the year by a local magazine.",
    "{S} often jokes about being the only {word} in the family band.",
    "{S} is proud to be a working {word} in {city}.",
    "{S} still keeps a photo from the day of becoming a proud {word}.",
    "{S} calls life as a busy {word} the best job of all.",
)  # fmt: skip

GENDERED_WORDS = MappingProxyType({
    "female": (
        "mother", "wife", "daughter", "sister", "grandmother", "aunt", "niece", "mom",
        "granddaughter", "stepmother", "goddaughter", "businesswoman", "sportswoman",
        "horsewoman", "chairwoman", "spokeswoman", "congresswoman", "actress", "hostess",
        "waitress", "heroine", "girlfriend", "bride", "lady", "woman", "girl", "duchess",
        "queen", "princess", "widow", "sorority sister", "stepdaughter", "godmother",
        "matriarch", "countess", "landlady", "schoolgirl", "ballerina", "nun", "empress",
    ),
    "male": (
        "father", "husband", "son", "brother", "grandfather", "uncle", "nephew", "dad",
        "grandson", "stepfather", "godson", "businessman", "sportsman", "horseman",
        "chairman", "spokesman", "congressman", "actor", "host", "waiter", "hero",
        "boyfriend", "groom", "gentleman", "man", "boy", "duke", "king", "prince", "widower",
        "fraternity brother", "stepson", "godfather", "patriarch", "count", "landlord",
        "schoolboy", "monk", "emperor", "fisherman",
    ),
})  # fmt: skip

CITIES: tuple[str, ...] = (
    "Chicago", "Boston", "Seattle", "Denver", "Austin", "Atlanta", "Portland", "Toronto",
    "London", "Dublin", "Sydney", "Melbourne", "Vancouver", "San Diego", "Philadelphia",
    "Minneapolis", "Nashville", "Miami", "Dallas", "Phoenix", "Brooklyn", "Baltimore",
)  # fmt: skip

SCHOOLS: tuple[str, ...] = (
    "the University of Michigan", "Stanford University", "Columbia University",
    "the University of Texas", "Ohio State University", "the University of Toronto",
    "Boston University", "the University of Washington", "Yale University",
    "the University of Florida", "Northwestern University", "McGill University",
    "the University of California", "Penn State", "Rutgers University", "Duke University",
)  # fmt: skip
