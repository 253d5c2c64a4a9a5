"""First names and surnames for the synthetic corpus.

The first-name lists are real, common given names (several hundred per gender), so that a
pretrained encoder has seen them and knows their usual gender while a few hundred labelled
examples cannot cover them. Names that are also everyday English words (Will, Grace, Mark, ...)
and names commonly given to both genders are left out, so a name is a clean gender cue.
Surnames carry no gender and only make the bios look like bios.
"""

from __future__ import annotations

FEMALE_NAMES: tuple[str, ...] = tuple(
    """
Abigail Adriana Agnes Aisha Alejandra Alexandra Alice Alicia Alison Allison Amanda Amber Amelia
Amy Ana Andrea Angela Angelica Anita Ann Anna Anne Annette Antonia Ashley Audrey Barbara
Beatrice Belinda Bernadette Beth Bethany Beverly Bianca Bonnie Brenda Bridget Brittany Brooke
Camila Candace Carla Carmen Carol Caroline Carolyn Carrie Cassandra Catherine Cecilia Charlotte
Chelsea Cheryl Christina Christine Cindy Claire Clara Claudia Colleen Constance Courtney
Cristina Crystal Cynthia Daisy Danielle Daphne Debbie Deborah Denise Diana Diane Donna Doris
Dorothy Edith Eileen Elaine Eleanor Elena Elisa Elizabeth Ella Ellen Eloise Emily Emma Erica
Erin Esther Eva Evelyn Felicia Fiona Florence Frances Francesca Gabriela Gabrielle Gail
Georgia Gina Giulia Gloria Greta Gwendolyn Hannah Harriet Heather Heidi Helen Helena Hilary
Holly Ingrid Irene Isabel Isabella Jacqueline Jane Janet Janice Jasmine Jeanette Jennifer
Jenna Jessica Jill Joan Joanna Jocelyn Josephine Joyce Judith Julia Julie Juliana Justine
Karen Katherine Kathleen Kathryn Katie Kayla Kelly Kimberly Kristen Kristin Laura Lauren Leah
Leila Lena Leslie Lillian Linda Lindsay Lisa Lois Lorena Lorraine Louise Lucia Lucy Lydia
Lynn Madeline Madison Magdalena Marcia Margaret Maria Marian Marie Marilyn Marina Marisa
Marjorie Marlene Martha Mary Maureen Megan Melanie Melissa Mercedes Meredith Mia Michelle
Mildred Miranda Miriam Molly Monica Nadia Nancy Naomi Natalia Natalie Nicole Nina Nora Norma
Olga Olivia Paige Pamela Patricia Paula Pauline Penelope Phyllis Priscilla Rachel Rebecca
Regina Renee Rhonda Rita Roberta Rosa Rosalind Rosemary Roxanne Ruth Sabrina Samantha Sandra
Sara Sarah Savannah Selena Serena Sharon Sheila Shirley Simone Sofia Sonia Sophia Sophie
Stacy Stephanie Susan Suzanne Sylvia Tamara Tanya Teresa Theresa Tiffany Tina Tracy Ursula
Valerie Vanessa Vera Veronica Victoria Viola Virginia Vivian Wanda Wendy Whitney Yolanda
Yvonne Zoe Adele Anastasia Annika Astrid Beatriz Camille Celeste Chloe Daniela Delphine
Dolores Elisabeth Elsa Emilia Estelle Fatima Gemma Gertrude Hazel Imogen Ines Isadora Ivana
Jeanne Johanna Juanita Karina Katarina Laila Larissa Leonora Lorna Lucinda Mabel Maeve Marta
Matilda Maya Mariana Noelle Ophelia Petra Rosalie Rowena Sienna Silvia Stella Svetlana Tabitha
Thea Valentina Wilhelmina Ximena Yasmin Zara Zelda Priya Ananya Mei Yuki Keiko Aiko Sakura
""".split()
)

MALE_NAMES: tuple[str, ...] = tuple(
    """
Aaron Abraham Adam Adrian Ahmed Alan Albert Alberto Alejandro Alexander Alfred Alfredo Ali
Allen Alvin Andre Andrew Angelo Anthony Antonio Arnold Arthur Arturo Barry Benjamin Bernard
Bradley Brandon Brendan Brett Brian Bruce Bryan Byron Calvin Carl Carlos Cedric Charles
Christian Christopher Clarence Clifford Clinton Colin Conrad Craig Curtis Daniel Darren David
Dennis Derek Desmond Diego Dominic Donald Douglas Duncan Dustin Dwight Edgar Eduardo Edward
Edwin Elijah Elliott Emmanuel Enrique Eric Ernest Ethan Eugene Evan Fabio Felix Fernando
Francis Francisco Frank Franklin Frederick Gabriel Gary Geoffrey George Gerald Gilbert Giovanni
Glen Gordon Graham Gregory Gustavo Harold Harvey Hector Henry Herbert Howard Hugh Hugo Ian
Isaac Ivan Jacob Jake James Jared Jason Jeffrey Jeremy Jerome Jesse Joel John Jonathan Joseph
Joshua Juan Julian Justin Keith Kenneth Kevin Kurt Lance Larry Lawrence Leonard Leroy Lewis
Lloyd Louis Lucas Luis Luke Malcolm Manuel Marcus Mario Martin Marvin Matthew Maurice Max
Michael Miguel Mitchell Mohammed Nathan Nathaniel Neil Nelson Nicholas Noah Norman Oliver Omar
Oscar Owen Pablo Patrick Paul Pedro Peter Philip Preston Rafael Ralph Randall Raymond
Reginald Ricardo Richard Robert Roberto Roger Roland Ronald Ross Roy Russell Samuel Scott
Sean Sebastian Sergio Seth Shane Simon Stanley Stephen Steven Stuart Theodore Thomas Timothy
Todd Tony Travis Trevor Tyler Victor Vincent Walter Warren Wayne Wesley William Xavier Zachary
Adolfo Ahmad Alessandro Alistair Ambrose Anton Augustine Bartholomew Benedict Boris Brent
Caleb Cesar Clayton Cornelius Cyrus Damien Dante Dimitri Elias Emil Emilio Ezra Fitzgerald
Floyd Fredrik Gareth Gerard Gideon Gunnar Hamish Hans Harrison Horace Ignacio Igor Isaiah
Jasper Javier Jeffery Jonas Jorge Julius Kareem Klaus Lars Leon Leopold Lionel Lorenzo
Luciano Magnus Marco Mateo Matthias Maximilian Milton Mohamed Moses Nikolai Nigel Orlando
Oswald Otto Percy Pierre Quentin Raul Reuben Rodrigo Rupert Salvador Santiago Silas Solomon
Stefan Sven Thaddeus Tobias Ulrich Vernon Vladimir Wallace Wilbur Winston Wolfgang Yusuf
Rahul Arjun Vikram Hiroshi Takeshi Kenji Wei Jun Tariq Hassan
""".split()
)

SURNAMES: tuple[str, ...] = tuple(
    """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
Gonzalez Wilson Anderson Taylor Moore Jackson Lee Perez Thompson Harris Sanchez Clark Ramirez
Robinson Walker Wright Torres Nguyen Hill Flores Adams Baker Hall Rivera Campbell Carter
Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris
Morales Murphy Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Ramos Kim Cox Ward
Richardson Watson Brooks Chavez Bennett Gray Mendoza Ruiz Hughes Alvarez Castillo Sanders Patel
Myers Foster Jimenez Powell Jenkins Perry Sullivan Coleman Butler Henderson Barnes Fisher
Vasquez Simmons Romero Jordan Patterson Hamilton Reynolds Griffin Cole West Chen Wang Li Zhang
Liu Singh Kumar Shah Cohen Schmidt Muller Weber Becker Rossi Russo Ferrari Costa Silva Santos
Oliveira Dubois Moreau Laurent Novak Kowalski Ivanov Petrov Yamamoto Tanaka Suzuki Sato OBrien
Murray Kennedy Gallagher
""".split()
)
