"""The small medical-style English corpus the demo tokenizer and demo model are trained on.

Written for this package (no downloaded data). It only has to give the demo checkpoint a
vocabulary of real words and a few recognisable chat replies; it is not medical advice.
"""

from __future__ import annotations

from .finetune.openmind_template import DEFAULT_SYSTEM_PROMPT  # the prompt fine-tuning adds, too

# (question, answer) pairs: the demo model is trained on them in the chat layout.
QA_PAIRS: tuple[tuple[str, str], ...] = (
    ("What is hypertension?",
     "Hypertension is high blood pressure. It often has no symptoms, so regular checks are important. "
     "Lifestyle changes and medicines can lower it."),
    ("What are the symptoms of diabetes?",
     "Common symptoms of diabetes are thirst, frequent urination, tiredness and weight loss. "
     "A blood test can confirm the diagnosis."),
    ("How can I lower my cholesterol?",
     "Eat more fibre, vegetables and whole grains, exercise regularly and avoid smoking. "
     "A doctor may also prescribe a statin."),
    ("What causes a fever?",
     "A fever is usually caused by an infection. It is the body raising its temperature to fight germs. "
     "Rest and fluids help."),
    ("When should I see a doctor for a headache?",
     "See a doctor if the headache is sudden and severe, follows an injury, or comes with fever, "
     "confusion or weakness."),
    ("What is asthma?",
     "Asthma is a long term condition of the airways. It causes wheezing, cough and shortness of breath. "
     "Inhalers control it."),
    ("How much water should I drink each day?",
     "Most adults need about two litres of fluid a day. You need more in hot weather or when you exercise."),
    ("What is a normal heart rate?",
     "A normal resting heart rate for adults is between sixty and one hundred beats per minute."),
    ("How do vaccines work?",
     "Vaccines train the immune system to recognise a germ, so the body can fight it quickly later."),
    ("What should I do for a sprained ankle?",
     "Rest the ankle, apply ice, use a compression bandage and keep the foot raised. "
     "See a doctor if you cannot walk on it."),
    ("What are the signs of a stroke?",
     "Signs of a stroke are a drooping face, arm weakness and slurred speech. "
     "Call emergency services at once."),
    ("What is anaemia?",
     "Anaemia means the blood has too few red cells or too little haemoglobin. "
     "It causes tiredness and pale skin."),
    ("How can I sleep better?",
     "Keep a regular bedtime, avoid caffeine late in the day, keep the bedroom dark and limit screens "
     "before sleep."),
    ("What is the flu?",
     "The flu is a viral infection of the nose, throat and lungs. It causes fever, aches and cough. "
     "A yearly vaccine helps prevent it."),
    ("Is paracetamol safe?",
     "Paracetamol is safe at the recommended dose. Taking too much can damage the liver, "
     "so follow the label."),
    ("What is an allergy?",
     "An allergy is a reaction of the immune system to a harmless substance such as pollen, dust or food."),
    ("How do I treat a minor burn?",
     "Cool the burn under running water for twenty minutes, then cover it with a clean dressing. "
     "Do not use ice."),
    ("What causes back pain?",
     "Back pain is often caused by strain, poor posture or lifting. Gentle movement and exercise usually help."),
    ("What is a healthy diet?",
     "A healthy diet has plenty of vegetables, fruit, whole grains and water, with little sugar, salt and "
     "processed food."),
    ("Why is exercise important?",
     "Exercise strengthens the heart and muscles, improves mood and sleep, and lowers the risk of disease."),
    ("What is a migraine?",
     "A migraine is a strong headache, often on one side, with nausea and sensitivity to light."),
    ("What are antibiotics for?",
     "Antibiotics treat infections caused by bacteria. They do not work against viruses such as a cold."),
    ("Who are you?",
     "I am a small demo assistant for medical questions. Please ask a doctor for real advice."),
    ("May I ask you some questions about medical knowledge?",
     "Of course. I am here to help. Please ask your questions."),
)

# Short paragraphs that widen the vocabulary beyond the chat replies.
PARAGRAPHS: tuple[str, ...] = (
    "The heart pumps blood through the arteries to every organ. The veins carry blood back to the heart. "
    "Blood pressure is measured in millimetres of mercury, for example 120 over 80.",
    "The lungs take in oxygen and remove carbon dioxide. Smoking damages the lungs and raises the risk of "
    "cancer, heart disease and stroke.",
    "The kidneys filter waste from the blood and make urine. Drinking enough water helps the kidneys work well.",
    "Insulin is a hormone made by the pancreas. It lets cells take up glucose from the blood. In diabetes the "
    "body makes too little insulin or cannot use it well.",
    "A clinical trial tests a new treatment in patients. Doctors compare the treatment with a placebo or with "
    "the standard care, and record side effects.",
    "Common medicines include paracetamol, ibuprofen, aspirin, metformin, amoxicillin and omeprazole. "
    "Always read the dose on the label and ask a pharmacist when unsure.",
    "The immune system protects the body against bacteria, viruses and fungi. White blood cells and "
    "antibodies are part of this defence.",
    "A balanced day has sleep, movement, meals at regular times and time to rest. Stress can raise the "
    "heart rate and blood pressure.",
    "Patients should tell the doctor about all their symptoms, their medicines and any allergies. "
    "The doctor may order a blood test, an X-ray or a scan.",
    "Children need vaccines against measles, mumps, rubella, polio and other diseases. "
    "Older adults benefit from vaccines against flu and pneumonia.",
    "Wash your hands with soap and water for twenty seconds. Clean hands stop many infections from spreading.",
    "Pain in the chest, trouble breathing or sudden weakness are emergencies. Call for help immediately.",
    # Every printable ASCII character, so that any English text maps to real pieces.
    "Symbols: ! \" # $ % & ' ( ) * + , - . / 0 1 2 3 4 5 6 7 8 9 : ; < = > ? @ [ \\ ] ^ _ ` { | } ~ "
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz",
)


def corpus_lines() -> list[str]:
    """Every sentence of the corpus, one per line (tokenizer training input)."""
    lines = [text for pair in QA_PAIRS for text in pair]
    lines += PARAGRAPHS
    lines.append(DEFAULT_SYSTEM_PROMPT)
    return lines
